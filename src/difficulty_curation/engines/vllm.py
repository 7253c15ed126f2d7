"""The vLLM backend: `LLM.generate` with `SamplingParams(n=k, ...)` and images as multi-modal data.

Request building (`build_vllm_prompt`, `sampling_kwargs`) and output parsing (`parse_vllm_outputs`)
are plain functions so they are tested without a GPU; the engine itself only runs where vLLM and a
CUDA GPU are installed (`pip install 'difficulty-curation[vllm]'`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from difficulty_curation.config import RolloutConfig, ScoringConfig
from difficulty_curation.engines.base import derive_seed, render_chat
from difficulty_curation.errors import BackendUnavailableError, ModelLoadError
from difficulty_curation.prompts import PromptRequest


def sampling_kwargs(rollout: RolloutConfig, num_rollouts: int, *, seed: int) -> dict[str, Any]:
    """Keyword arguments for `vllm.SamplingParams` that match our transformers sampling."""
    return {
        "n": num_rollouts,
        "temperature": rollout.temperature,
        "top_p": rollout.top_p,
        "top_k": rollout.top_k if rollout.top_k > 0 else -1,  # vLLM: -1 disables top-k
        "max_tokens": rollout.max_new_tokens,
        "seed": seed,
    }


def build_vllm_prompt(prompt_text: str, images: Sequence[Any]) -> dict[str, Any]:
    """One vLLM text prompt (`TextPrompt`): the rendered chat plus its images as `multi_modal_data`."""
    request: dict[str, Any] = {"prompt": prompt_text}
    if images:
        request["multi_modal_data"] = {"image": images[0] if len(images) == 1 else list(images)}
    return request


def parse_vllm_outputs(outputs: Sequence[Any], num_requests: int, num_rollouts: int) -> list[list[str]]:
    """Completion texts per request from `LLM.generate`'s `RequestOutput` list (inputs order kept)."""
    if len(outputs) != num_requests:
        raise RuntimeError(f"vLLM returned {len(outputs)} outputs for {num_requests} requests")
    texts = []
    for output in outputs:
        completions = sorted(output.outputs, key=lambda completion: completion.index)
        if len(completions) != num_rollouts:
            raise RuntimeError(
                f"vLLM returned {len(completions)} completions for request {output.request_id}, "
                f"expected n={num_rollouts}"
            )
        texts.append([completion.text for completion in completions])
    return texts


class VLLMEngine:
    """Samples rollouts with vLLM's offline `LLM`; one request per row with a row-derived seed."""

    def __init__(self, config: ScoringConfig, *, max_images_per_prompt: int = 4, **llm_options: Any) -> None:
        try:
            from vllm import LLM, SamplingParams
        except ImportError:
            raise BackendUnavailableError(
                "backend='vllm' needs vLLM, which is not installed: pip install 'difficulty-curation[vllm]' "
                "(Linux with a CUDA GPU), or use backend='transformers'."
            ) from None
        from transformers import AutoProcessor

        self.config = config
        self._sampling_params = SamplingParams
        try:
            self.processor = AutoProcessor.from_pretrained(config.model, revision=config.revision)
            self.llm = LLM(
                model=config.model,
                revision=config.revision,
                seed=config.rollout.seed,
                limit_mm_per_prompt={"image": max_images_per_prompt},
                **llm_options,
            )
        except (OSError, ValueError) as error:
            raise ModelLoadError(f"vLLM could not load model {config.model!r}: {error}") from None
        self.model_revision: str | None = config.revision

    def generate(
        self, requests: Sequence[PromptRequest], num_rollouts: int, *, first_rollout: int = 0
    ) -> list[list[str]]:
        """One `LLM.generate` call for the whole batch; vLLM schedules it continuously.

        Each request is seeded from (seed, row content, first_rollout): deterministic per row and
        independent of batching, though not rollout-by-rollout like the transformers backend.
        """
        prompts = [build_vllm_prompt(render_chat(self.processor, r.messages), r.images) for r in requests]
        params = [
            self._sampling_params(
                **sampling_kwargs(
                    self.config.rollout,
                    num_rollouts,
                    seed=derive_seed(self.config.rollout.seed, r.content_hash, str(first_rollout)),
                )
            )
            for r in requests
        ]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        return parse_vllm_outputs(outputs, len(requests), num_rollouts)
