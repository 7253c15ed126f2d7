"""`deterministic=true` for the vLLM backend (VLLM_BATCH_INVARIANT=1), without the engine.

Batch invariance needs a CUDA GPU of compute capability >= 8.0: its effect on tokens is measured by
benchmarks/gpu.sh, not here.
"""

from difficulty_curation import score_difficulty
from difficulty_curation.config import RolloutConfig
from difficulty_curation.engines.vllm import batch_invariance, sampling_kwargs


def test_deterministic_sets_vllm_batch_invariant_and_is_not_passed_to_vllm():
    options, environment = batch_invariance({"deterministic": True, "max_model_len": 512})
    assert options == {"max_model_len": 512} and environment == {"VLLM_BATCH_INVARIANT": "1"}
    assert batch_invariance({"deterministic": "false"})[1] == {}
    assert batch_invariance({}) == ({}, {})


def test_deterministic_is_recorded_in_the_provenance_and_the_rollout_cache_key():
    config = score_difficulty("m", backend="vllm", engine_options={"deterministic": True}).config
    assert config.to_dict()["engine_options"] == {"deterministic": True}
    assert config.rollout_identity() != score_difficulty("m", backend="vllm").config.rollout_identity()


def test_a_window_request_asks_for_its_rollouts_from_its_first_seed():
    assert {
        k: v for k, v in sampling_kwargs(RolloutConfig(), seed=40, num_rollouts=4).items() if k in ("n", "seed")
    } == {
        "n": 4,
        "seed": 40,
    }
