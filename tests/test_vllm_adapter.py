"""The vLLM adapter's request building and output parsing, against vLLM's documented data shapes.

vLLM cannot be installed on CI machines, so the engine itself is not run here: these tests use
plain objects shaped like `vllm.RequestOutput` / `vllm.CompletionOutput` (request_id, outputs[i].index,
outputs[i].text) and the `TextPrompt` dict (`prompt`, `multi_modal_data={"image": ...}`).
"""

import importlib.util
from dataclasses import dataclass, field

import pytest
from PIL import Image

from difficulty_curation.config import RolloutConfig, ScoringConfig
from difficulty_curation.engines.base import resolve_backend
from difficulty_curation.engines.vllm import build_vllm_prompt, parse_vllm_outputs, sampling_kwargs
from difficulty_curation.errors import BackendUnavailableError


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list[int] = field(default_factory=list)
    finish_reason: str = "stop"


@dataclass
class RequestOutput:
    request_id: str
    prompt: str
    outputs: list[CompletionOutput]
    finished: bool = True


def test_sampling_kwargs_carry_the_papers_options_with_n_equal_k():
    kwargs = sampling_kwargs(RolloutConfig(), 8, seed=123)
    assert kwargs == {"n": 8, "temperature": 0.9, "top_p": 1.0, "top_k": 50, "max_tokens": 128, "seed": 123}


def test_top_k_zero_means_disabled_which_vllm_spells_minus_one():
    assert sampling_kwargs(RolloutConfig(top_k=0), 2, seed=0)["top_k"] == -1


def test_a_single_image_is_passed_as_one_multimodal_item():
    image = Image.new("RGB", (4, 4))
    assert build_vllm_prompt("<image>Which digit?", [image]) == {
        "prompt": "<image>Which digit?",
        "multi_modal_data": {"image": image},
    }


def test_several_images_are_passed_as_a_list_and_text_only_has_no_multimodal_data():
    images = [Image.new("RGB", (4, 4)), Image.new("RGB", (5, 5))]
    assert build_vllm_prompt("p", images)["multi_modal_data"]["image"] == images
    assert build_vllm_prompt("p", []) == {"prompt": "p"}


def test_outputs_are_parsed_in_request_order_and_completion_index_order():
    outputs = [
        RequestOutput("0", "a", [CompletionOutput(1, "cat"), CompletionOutput(0, "dog")]),
        RequestOutput("1", "b", [CompletionOutput(0, "3"), CompletionOutput(1, "8")]),
    ]
    assert parse_vllm_outputs(outputs, num_requests=2, num_rollouts=2) == [["dog", "cat"], ["3", "8"]]


def test_a_short_answer_from_vllm_is_an_error_not_a_silent_miscount():
    outputs = [RequestOutput("0", "a", [CompletionOutput(0, "cat")])]
    with pytest.raises(RuntimeError, match="1 completions for request 0, expected n=2"):
        parse_vllm_outputs(outputs, num_requests=1, num_rollouts=2)
    with pytest.raises(RuntimeError, match="1 outputs for 2 requests"):
        parse_vllm_outputs(outputs, num_requests=2, num_rollouts=1)


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_without_vllm_the_backend_says_how_to_install_it():
    from difficulty_curation.engines.vllm import VLLMEngine

    with pytest.raises(BackendUnavailableError, match=r"pip install 'difficulty-curation\[vllm\]'"):
        VLLMEngine(ScoringConfig(model="m", backend="vllm"))
    assert resolve_backend("auto") == "transformers"
