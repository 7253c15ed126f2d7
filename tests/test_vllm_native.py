"""Qwen2.5-VL (the paper's family) on vLLM's own implementation, not its transformers backend.

The zoo's tiny Qwen2.5-VL (`tests/zoo.py`), saved by transformers as a user's model is, started
once for the module with no `model_impl`: vLLM's native `Qwen2_5_VLForConditionalGeneration`.
Its engine options come in as the CLI's `--engine-option` would give them, `mm_processor_kwargs`
included. vLLM's Qwen-VL processors need torchvision: the vLLM tier's environment has the
stand-in described in `tests/vllm_env/torchvision_ops_stub.py`.
"""

from __future__ import annotations

import os
import tempfile

import pytest
from helpers import on_started_engine
from test_model_families import padded_rows

from difficulty_curation import score_difficulty
from difficulty_curation.config import parse_engine_options
from difficulty_curation.engines.base import render_chat
from difficulty_curation.engines.vllm import build_vllm_prompt
from difficulty_curation.runners.in_memory import score_dataset

pytestmark = pytest.mark.vllm

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_CACHE_ROOT", tempfile.mkdtemp(prefix="vllm-cache-"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

#: At most 28x56 pixels per image, where the folder's processor allows 56x56: a 56x56 image gives
#: vLLM fewer image tokens than the folder's own processor would.
MAX_PIXELS = 28 * 56
ENGINE_OPTIONS = parse_engine_options(
    [
        "enforce_eager=true",
        "max_model_len=512",
        "dtype=float32",
        f'mm_processor_kwargs={{"max_pixels": {MAX_PIXELS}}}',
    ]
)
SAMPLING = {"num_rollouts": 4, "max_new_tokens": 6, "keep_rollouts": True}


# -- Qwen3-VL and Gemma 3, one engine each (before the module's Qwen2.5-VL engine: never two at once) --------


@pytest.mark.matrix("vLLM native")
@pytest.mark.parametrize("family", ["qwen3_vl", "gemma3"])
def test_another_family_runs_natively_batch_invariant_and_greedy_as_the_transformers_backend(family, zoo):
    from difficulty_curation.engines.vllm import VLLMEngine

    options = {"enforce_eager": True, "max_model_len": 512, "dtype": "float32"}
    rows = padded_rows(with_images=True)
    scorer = score_difficulty(str(zoo[family]), backend="vllm", engine_options=options, **SAMPLING)
    scorer.engine = VLLMEngine(scorer.config)
    try:
        assert scorer.engine.llm.llm_engine.model_config.model_impl in ("auto", "vllm")
        whole, ones = (score_dataset(rows, scorer, batch_size=size, progress=False) for size in (len(rows), 1))
        assert whole["difficulty_error"] == [""] * len(rows)
        assert whole["rollouts"] == ones["rollouts"]
        greedy = {"temperature": 0.0, "num_rollouts": 1, "max_new_tokens": 8}
        vllm_greedy = score_difficulty(
            str(zoo[family]), backend="vllm", engine_options=options, **{**SAMPLING, **greedy}
        )
        on_started_engine(vllm_greedy, scorer.engine)
        ours = score_dataset(rows, vllm_greedy, progress=False)
        reference = score_dataset(
            rows, score_difficulty(str(zoo[family]), backend="transformers", **{**SAMPLING, **greedy}), progress=False
        )
        assert without_partial_characters(ours["rollouts"]) == without_partial_characters(reference["rollouts"])
    finally:
        scorer.engine.llm.llm_engine.engine_core.shutdown()


def without_partial_characters(rollouts):
    """Rollouts less a trailing U+FFFD: a rollout cut off inside a UTF-8 character (random tiny models emit
    stray bytes) ends in U+FFFD from transformers' decoder, while vLLM's detokenizer holds the partial
    character back. The tokens are the same."""
    return [[text.rstrip("\ufffd") for text in row] for row in rollouts]


# -- Qwen2.5-VL: one engine for the rest of the module ----------------------------------------------------


@pytest.fixture(scope="module")
def qwen(zoo):
    return zoo["qwen2_5_vl"]


@pytest.fixture(scope="module")
def engine(qwen):
    from difficulty_curation.engines.vllm import VLLMEngine

    config = score_difficulty(str(qwen), backend="vllm", engine_options=ENGINE_OPTIONS, **SAMPLING).config
    started = VLLMEngine(config)
    yield started
    started.llm.llm_engine.engine_core.shutdown()


def vllm_scorer(model, engine, **options):
    scorer = score_difficulty(str(model), backend="vllm", engine_options=ENGINE_OPTIONS, **{**SAMPLING, **options})
    return on_started_engine(scorer, engine)


@pytest.mark.matrix("vLLM native", family="qwen2_5_vl")
def test_qwen2_5_vl_runs_on_vllms_own_implementation(engine):
    config = engine.llm.llm_engine.model_config
    assert config.architectures == ["Qwen2_5_VLForConditionalGeneration"]
    assert config.model_impl in ("auto", "vllm")
    assert engine.engine_options["mm_processor_kwargs"] == {"max_pixels": MAX_PIXELS}


@pytest.mark.matrix("vLLM native", family="qwen2_5_vl")
def test_image_rows_of_several_sizes_and_prompt_lengths_are_scored(engine, qwen):
    rows = padded_rows(with_images=True)
    scored = score_dataset(rows, vllm_scorer(qwen, engine), progress=False)
    assert scored["difficulty_error"] == [""] * len(rows)
    assert scored["num_rollouts"] == [4] * len(rows)


@pytest.mark.matrix("vLLM native", family="qwen2_5_vl")
def test_rollouts_do_not_depend_on_the_batch(engine, qwen):
    rows = padded_rows(with_images=True)
    by_batch = {
        size: score_dataset(rows, vllm_scorer(qwen, engine, temperature=1.0), batch_size=size, progress=False)
        for size in (1, 4, len(rows))
    }
    ones, fours, whole = (by_batch[size]["rollouts"] for size in (1, 4, len(rows)))
    assert ones == fours == whole
    assert len({tuple(rollouts) for rollouts in ones}) > 1  # sampled, not one answer everywhere


@pytest.mark.matrix("vLLM native", family="qwen2_5_vl")
def test_greedy_answers_equal_the_transformers_backends(engine, qwen):
    # Only images the engine's max_pixels leaves as they are: the transformers backend uses the folder's size limits.
    rows = padded_rows(with_images=True)
    rows = rows.filter(lambda row: all(image.width * image.height <= MAX_PIXELS for image in row["image"]))
    assert len(rows) >= 6 and any(not images for images in rows["image"])
    options = {"temperature": 0.0, "num_rollouts": 1, "max_new_tokens": 8}
    ours = score_dataset(rows, vllm_scorer(qwen, engine, **options), progress=False)
    reference = score_dataset(
        rows, score_difficulty(str(qwen), backend="transformers", **{**SAMPLING, **options}), progress=False
    )
    assert without_partial_characters(ours["rollouts"]) == without_partial_characters(reference["rollouts"])


def _image_tokens(processor, ids) -> int:
    return list(ids).count(processor.tokenizer.convert_tokens_to_ids("<|image_pad|>"))


def test_mm_processor_kwargs_from_engine_options_reach_vllms_processor(engine):
    from PIL import Image
    from vllm import SamplingParams

    image = Image.new("RGB", (56, 56), "white")
    content = [{"type": "image"}, {"type": "text", "text": "What digit is shown?"}]
    text = render_chat(engine.processor, [{"role": "user", "content": content}])
    (output,) = engine.llm.generate([build_vllm_prompt(text, [image])], SamplingParams(max_tokens=1), use_tqdm=False)
    folder_default = engine.processor(text=text, images=[image])["input_ids"][0]
    size = {"shortest_edge": engine.processor.image_processor.size.shortest_edge, "longest_edge": MAX_PIXELS}
    limited = engine.processor(text=text, images=[image], size=size)["input_ids"][0]
    assert _image_tokens(engine.processor, folder_default) == 4  # 56x56 pixels: 4x4 patches, merged 2x2
    assert _image_tokens(engine.processor, output.prompt_token_ids) == _image_tokens(engine.processor, limited) == 1
