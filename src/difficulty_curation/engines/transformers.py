"""The transformers backend: batched, left-padded `generate(num_return_sequences=k)`, one prefill per prompt."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from difficulty_curation.config import ScoringConfig
from difficulty_curation.engines.base import derive_seed, render_chat
from difficulty_curation.engines.sampling import CounterSampler
from difficulty_curation.errors import ConfigError, ModelLoadError, RowError
from difficulty_curation.prompts import PromptRequest

logger = logging.getLogger(__name__)

#: transformers' own sampling warpers, switched off: `CounterSampler` leaves one finite score per step.
_NATIVE_SAMPLING_OFF = {"do_sample": True, "temperature": 1.0, "top_k": 0, "top_p": 1.0}


class TransformersEngine:
    """Samples rollouts with a Hugging Face model loaded once (`AutoModelForImageTextToText` or causal LM)."""

    def __init__(self, config: ScoringConfig, *, device: str | None = None) -> None:
        import torch

        self.config = config
        self.rollout = config.rollout
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.processor, self.model = load_model_and_processor(config.model, config.revision, self.device)
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        text_config = self.model.config.get_text_config()
        self.context_length: int | None = getattr(text_config, "max_position_embeddings", None)
        if self.context_length is not None and self.rollout.max_new_tokens >= self.context_length:
            raise ConfigError(
                f"max_new_tokens={self.rollout.max_new_tokens} does not fit the context of {config.model!r} "
                f"({self.context_length} tokens, prompt included); pass a smaller --max-new-tokens."
            )
        #: Prefill each prompt once and share its KV cache across rollouts (off if the model rejects it).
        self.shared_prefill = True
        #: The model's commit hash when it came from the Hub cache (None for plain local folders).
        self.model_revision: str | None = getattr(self.model.config, "_commit_hash", None) or config.revision

    def generate(
        self, requests: Sequence[PromptRequest], num_rollouts: int, *, first_rollout: int = 0
    ) -> list[list[str] | RowError]:
        """One `generate` call per modality group; a row the model cannot take becomes a `RowError`.

        Rollout `i` of a row is drawn from its own stream, seeded by (seed, row content,
        `first_rollout + i`), so the result does not depend on which rows share the call.
        """
        results: list[list[str] | RowError | None] = [None] * len(requests)
        texts: dict[int, str] = {}
        for index, request in enumerate(requests):
            try:
                texts[index] = render_chat(self.processor, request.messages)
            except Exception as error:  # a template that rejects this row's messages
                results[index] = RowError(self.config.prompt_column, f"chat template failed: {error}")
        with_images = [i for i in texts if requests[i].images]
        text_only = [i for i in texts if not requests[i].images]
        for modality in (with_images, text_only):
            if not modality:
                continue
            lengths = [
                len(ids) for ids in self.tokenizer([texts[i] for i in modality], add_special_tokens=False)["input_ids"]
            ]
            for group in length_buckets(modality, lengths):
                outcomes = self._generate_group(requests, texts, group, num_rollouts, first_rollout)
                for index, outcome in zip(group, outcomes):
                    results[index] = outcome
        return results  # type: ignore[return-value]

    def _generate_group(
        self,
        requests: Sequence[PromptRequest],
        texts: dict[int, str],
        group: list[int],
        num_rollouts: int,
        first_rollout: int,
    ) -> list[list[str] | RowError]:
        import torch

        inputs = self._encode([texts[i] for i in group], [requests[i].images for i in group])
        outcomes: list[list[str] | RowError] = [[] for _ in group]
        too_long = self._too_long(inputs["attention_mask"].sum(dim=1).tolist())
        for position, length in too_long.items():
            outcomes[position] = RowError(
                self.config.prompt_column,
                f"prompt is {length} tokens; with max_new_tokens={self.rollout.max_new_tokens} "
                f"it exceeds the model's context of {self.context_length}",
            )
        keep = [p for p in range(len(group)) if p not in too_long]
        if not keep:
            return outcomes
        if too_long:
            inputs = self._encode([texts[group[p]] for p in keep], [requests[group[p]].images for p in keep])
        hashes = [requests[group[p]].content_hash for p in keep]
        with torch.no_grad():
            output = self._sample(inputs.to(self.device), hashes, num_rollouts, first_rollout)
        completions = self.tokenizer.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        for order, position in enumerate(keep):
            outcomes[position] = completions[order * num_rollouts : (order + 1) * num_rollouts]
        return outcomes

    def _sample(self, inputs: Any, hashes: list[str], num_rollouts: int, first_rollout: int) -> Any:
        import torch
        from transformers import LogitsProcessorList

        rollout = self.rollout
        common = {"max_new_tokens": rollout.max_new_tokens, "pad_token_id": self.tokenizer.pad_token_id}
        if rollout.temperature == 0:  # greedy: every rollout is the same answer
            output = self.model.generate(**inputs, do_sample=False, num_return_sequences=1, **common)
            return output.repeat_interleave(num_rollouts, dim=0)
        sampler = CounterSampler(
            [derive_seed(rollout.seed, h, str(first_rollout + i)) for h in hashes for i in range(num_rollouts)],
            prompt_length=inputs["input_ids"].shape[1],
            temperature=rollout.temperature,
            top_k=rollout.top_k,
            top_p=rollout.top_p,
        )
        processors = LogitsProcessorList([sampler])
        if self.shared_prefill:
            try:
                return self._generate_after_shared_prefill(inputs, processors, num_rollouts, common)
            except torch.OutOfMemoryError:
                raise
            except Exception as error:  # a model whose generate() does not accept a prefilled cache
                logger.warning(
                    "%s: shared prefill failed (%s: %s); prefilling every rollout instead",
                    type(self.model).__name__,
                    type(error).__name__,
                    error,
                )
                self.shared_prefill = False
        return self.model.generate(
            **inputs, num_return_sequences=num_rollouts, logits_processor=processors, **_NATIVE_SAMPLING_OFF, **common
        )

    def _generate_after_shared_prefill(
        self, inputs: Any, processors: Any, num_rollouts: int, common: dict[str, Any]
    ) -> Any:
        """Prefill each prompt once (images included), repeat its KV cache k times, then decode.

        `generate(num_return_sequences=k)` repeats the inputs *before* the prefill, so the vision
        tower and the prompt run k times per row; here they run once.
        """
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        prefill_inputs = {key: value for key, value in inputs.items() if key not in ("input_ids", "attention_mask")}
        prefill = self.model(
            input_ids=ids[:, :-1], attention_mask=mask[:, :-1], use_cache=True, logits_to_keep=1, **prefill_inputs
        )
        cache_name = "cache" if getattr(prefill, "cache", None) is not None else "past_key_values"
        cache = getattr(prefill, cache_name)
        cache.batch_repeat_interleave(num_rollouts)
        return self.model.generate(
            input_ids=ids.repeat_interleave(num_rollouts, dim=0),
            attention_mask=mask.repeat_interleave(num_rollouts, dim=0),
            logits_processor=processors,
            **{cache_name: cache},
            **_NATIVE_SAMPLING_OFF,
            **common,
        )

    def _encode(self, texts: list[str], images: list[list[Any]]) -> Any:
        if any(images):
            return self.processor(text=texts, images=images, padding=True, return_tensors="pt")
        return self.tokenizer(texts, padding=True, return_tensors="pt", add_special_tokens=False)

    def _too_long(self, lengths: list[int]) -> dict[int, int]:
        if self.context_length is None:
            return {}
        limit = self.context_length - self.rollout.max_new_tokens
        return {position: length for position, length in enumerate(lengths) if length > limit}


def length_buckets(indices: list[int], lengths: list[int], *, max_ratio: float = 1.5) -> list[list[int]]:
    """Group rows of similar prompt length so one long prompt does not pad a whole batch.

    Rows are sorted by length and a new group starts at the first row more than `max_ratio`
    times as long as the group's shortest (so lengths from 10 to 1,000 tokens make about 11
    groups). Sampling is seeded per rollout, so the grouping changes the cost, never the result.
    """
    groups: list[list[int]] = []
    shortest = 0
    for length, index in sorted(zip(lengths, indices)):
        if groups and length <= max_ratio * max(shortest, 1):
            groups[-1].append(index)
        else:
            groups.append([index])
            shortest = length
    return groups


def load_model_and_processor(model: str, revision: str | None, device: str) -> tuple[Any, Any]:
    """Load processor and model the way users do: `AutoProcessor` + `AutoModelForImageTextToText` (or causal LM)."""
    import torch
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor

    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        processor = AutoProcessor.from_pretrained(model, revision=revision)
    except (OSError, ValueError) as error:
        raise ModelLoadError(
            f"could not load a processor for model {model!r}: {error}. Pass a local folder made by "
            "save_pretrained (config.json, tokenizer, processor files) or a Hub id."
        ) from None
    try:
        try:
            loaded = AutoModelForImageTextToText.from_pretrained(model, revision=revision, dtype=dtype)
        except ValueError:  # not an image-text-to-text architecture: a text-only causal LM
            loaded = AutoModelForCausalLM.from_pretrained(model, revision=revision, dtype=dtype)
    except (OSError, ValueError, SafetensorError) as error:  # missing, incomplete or corrupt weights
        raise ModelLoadError(
            f"could not load model {model!r}: {error}. Check that its weights are complete (download or save it again)."
        ) from None
    logger.info("loaded %s (%s) on %s", model, type(loaded).__name__, device)
    return processor, loaded.to(device).eval()
