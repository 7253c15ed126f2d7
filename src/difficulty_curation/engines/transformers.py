"""The transformers backend: batched, left-padded `generate(num_return_sequences=k)`, one prefill per prompt."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from difficulty_curation.answers import FINISH_LENGTH, FINISH_STOP, Completion
from difficulty_curation.config import ScoringConfig
from difficulty_curation.engines.base import render_chat
from difficulty_curation.engines.sampling import CounterSampler, rollout_seed
from difficulty_curation.errors import ConfigError, RowError
from difficulty_curation.models import load_model_and_processor
from difficulty_curation.prompts import PromptRequest
from difficulty_curation.redact import get_logger

logger = get_logger(__name__)

#: transformers' own sampling warpers, switched off: `CounterSampler` leaves one finite score per step.
_NATIVE_SAMPLING_OFF = {"do_sample": True, "temperature": 1.0, "top_k": 0, "top_p": 1.0}


class TransformersEngine:
    """Samples rollouts with a Hugging Face model loaded once (`AutoModelForImageTextToText` or causal LM)."""

    def __init__(self, config: ScoringConfig, *, device: str | None = None) -> None:
        import torch

        self.config = config
        self.rollout = config.rollout
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.processor, self.model = load_model_and_processor(
            config.model, config.revision, self.device, options=config.engine_options
        )
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
        """Prefill every prompt once, then decode `num_rollouts` rollouts per row from its KV cache.

        Rollout `i` of a row is drawn from its own stream, seeded by (seed, row content,
        `first_rollout + i`), so the result does not depend on which rows share the call.
        """
        prompts = self.prefill(requests)
        return prompts.sample(range(len(requests)), num_rollouts, first_rollout=first_rollout, keep_cache=False)

    def prefill(self, requests: Sequence[PromptRequest]) -> PrefilledPrompts:
        """Encode and prefill `requests` once (images included), in groups of similar length.

        The returned `PrefilledPrompts` decodes rollouts for any subset of the rows, in as many
        rounds as asked, from the saved KV caches: adaptive sampling never prefills a row twice.
        A row the model cannot take becomes a `RowError`.
        """
        errors: dict[int, RowError] = {}
        texts: dict[int, str] = {}
        for index, request in enumerate(requests):
            try:
                texts[index] = render_chat(self.processor, request.messages, self.config.chat_template_kwargs)
            except Exception as error:  # a template that rejects this row's messages
                errors[index] = RowError(self.config.prompt_column, f"chat template failed: {error}")
        groups: list[PromptGroup] = []
        with_images = [i for i in texts if requests[i].images]
        text_only = [i for i in texts if not requests[i].images]
        for modality in (with_images, text_only):
            if not modality:
                continue
            lengths = [
                len(ids) for ids in self.tokenizer([texts[i] for i in modality], add_special_tokens=False)["input_ids"]
            ]
            for rows in length_buckets(modality, lengths):
                group = self._prefill_group(requests, texts, rows, errors)
                if group is not None:
                    groups.append(group)
        return PrefilledPrompts(self, groups, errors)

    def _prefill_group(
        self, requests: Sequence[PromptRequest], texts: dict[int, str], rows: list[int], errors: dict[int, RowError]
    ) -> PromptGroup | None:
        import torch

        inputs = self._encode([texts[i] for i in rows], [requests[i].images for i in rows])
        too_long = self._too_long(inputs["attention_mask"].sum(dim=1).tolist())
        for position, length in too_long.items():
            errors[rows[position]] = RowError(
                self.config.prompt_column,
                f"prompt is {length} tokens; with max_new_tokens={self.rollout.max_new_tokens} "
                f"it exceeds the model's context of {self.context_length}",
            )
        if too_long:
            rows = [row for position, row in enumerate(rows) if position not in too_long]
            if not rows:
                return None
            inputs = self._encode([texts[i] for i in rows], [requests[i].images for i in rows])
        group = PromptGroup(
            rows=rows,
            texts=[texts[i] for i in rows],
            images=[requests[i].images for i in rows],
            hashes=[requests[i].content_hash for i in rows],
            inputs=inputs.to(self.device),
        )
        if self.shared_prefill:
            try:
                with torch.no_grad():
                    group.positions = self._prompt_positions(group.inputs)
                    group.cache_name, group.cache = self._prefill(group.inputs, group.positions)
            except torch.OutOfMemoryError:
                raise
            except Exception as error:  # a model whose forward() does not return a reusable cache
                self._give_up_shared_prefill(error)
        return group

    def _prompt_positions(self, inputs: Any) -> Any:
        """The position ids `generate` gives these prompts, computed by the model's own code for these rows.

        Positions count from each row's first real token (left pads are not counted), as `generate`
        numbers them; M-RoPE models (Qwen2-VL and later) get their 3-D vision positions from the
        rows' own image grids, never from deltas the model kept from an earlier call.
        """
        kwargs = dict(inputs)
        return self.model._prepare_position_ids_for_generation(inputs["input_ids"], kwargs)

    def _prefill(self, inputs: Any, positions: Any) -> tuple[str, Any]:
        """Run the prompts (all but their last token, images included) once; returns their KV cache."""
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        extra = {
            key: value[..., :-1] if _is_per_token(key) else value  # cut with the prompt, like the ids
            for key, value in inputs.items()
            if key not in ("input_ids", "attention_mask")
        }
        output = self.model(
            input_ids=ids[:, :-1],
            attention_mask=mask[:, :-1],
            position_ids=positions[..., :-1],
            use_cache=True,
            logits_to_keep=1,
            **extra,
        )
        cache_name = "cache" if getattr(output, "cache", None) is not None else "past_key_values"
        return cache_name, getattr(output, cache_name)

    def _give_up_shared_prefill(self, error: Exception) -> None:
        logger.warning(
            "%s: shared prefill failed (%s: %s); prefilling every rollout instead",
            type(self.model).__name__,
            type(error).__name__,
            error,
        )
        self.shared_prefill = False

    def _decode(
        self, group: PromptGroup, chosen: list[int], num_rollouts: int, first_rollout: int, keep_cache: bool
    ) -> list[list[str]]:
        """`num_rollouts` rollouts for the group's rows at positions `chosen` (rollouts `first_rollout` on)."""
        import torch

        hashes = [group.hashes[position] for position in chosen]
        output = None
        with torch.no_grad():
            if group.cache is not None:
                try:
                    output = self._decode_from_cache(group, chosen, hashes, num_rollouts, first_rollout, keep_cache)
                    prompt_width = group.inputs["input_ids"].shape[1]
                except torch.OutOfMemoryError:
                    raise
                except Exception as error:  # a model whose generate() does not accept a prefilled cache
                    self._give_up_shared_prefill(error)
                    group.cache = None
            if output is None:  # `generate` prefills again (the whole group's encoding is reused when it can be)
                inputs = group.inputs
                if len(chosen) < len(group.rows):
                    inputs = self._encode([group.texts[p] for p in chosen], [group.images[p] for p in chosen])
                    inputs = inputs.to(self.device)
                output = self._generate_prefilling(inputs, hashes, num_rollouts, first_rollout)
                prompt_width = inputs["input_ids"].shape[1]
        completions = self._completions(output[:, prompt_width:])
        return [completions[order * num_rollouts : (order + 1) * num_rollouts] for order in range(len(chosen))]

    def _completions(self, generated: Any) -> list[Completion]:
        """The generated token ids as text, each with its finish reason: "length" when no end-of-sequence
        token came within `max_new_tokens` (a sequence that stopped is padded after its end token)."""
        import torch

        stop_ids = self.model.generation_config.eos_token_id
        if stop_ids is None:
            stop_ids = self.tokenizer.eos_token_id
        stop_ids = [stop_ids] if isinstance(stop_ids, int) else list(stop_ids or [])
        stopped = (
            torch.isin(generated, torch.tensor(stop_ids, dtype=generated.dtype, device=generated.device))
            .any(dim=1)
            .tolist()
        )
        texts = self.tokenizer.batch_decode(generated, skip_special_tokens=True)
        return [Completion(text, FINISH_STOP if done else FINISH_LENGTH) for text, done in zip(texts, stopped)]

    def _decode_from_cache(
        self,
        group: PromptGroup,
        chosen: list[int],
        hashes: list[str],
        num_rollouts: int,
        first_rollout: int,
        keep_cache: bool,
    ) -> Any:
        """Select the chosen rows' KV cache, repeat it once per rollout, and decode."""
        import torch

        greedy = self.rollout.temperature == 0  # every rollout is the same answer: decode one
        copies = 1 if greedy else num_rollouts
        rows = torch.tensor(chosen, device=group.inputs["input_ids"].device).repeat_interleave(copies)
        cache = copy.deepcopy(group.cache) if keep_cache else group.cache
        if len(rows) != len(group.rows) or not torch.equal(rows, torch.arange(len(rows), device=rows.device)):
            cache.batch_select_indices(rows)  # select and repeat in one copy
        ids, mask = group.inputs["input_ids"][rows], group.inputs["attention_mask"][rows]
        common = {
            "max_new_tokens": self.rollout.max_new_tokens,
            "pad_token_id": self.tokenizer.pad_token_id,
            "position_ids": group.positions.index_select(-2, rows),  # the decoded rows' own positions
            group.cache_name: cache,
        }
        if greedy:
            output = self.model.generate(input_ids=ids, attention_mask=mask, do_sample=False, **common)
            return output.repeat_interleave(num_rollouts, dim=0)
        return self.model.generate(
            input_ids=ids,
            attention_mask=mask,
            logits_processor=self._processors(ids.shape[1], hashes, num_rollouts, first_rollout),
            **_NATIVE_SAMPLING_OFF,
            **common,
        )

    def _generate_prefilling(self, inputs: Any, hashes: list[str], num_rollouts: int, first_rollout: int) -> Any:
        """The slow path: `generate(num_return_sequences=k)`, which prefills every rollout again."""
        common = {"max_new_tokens": self.rollout.max_new_tokens, "pad_token_id": self.tokenizer.pad_token_id}
        if self.rollout.temperature == 0:
            output = self.model.generate(**inputs, do_sample=False, num_return_sequences=1, **common)
            return output.repeat_interleave(num_rollouts, dim=0)
        processors = self._processors(inputs["input_ids"].shape[1], hashes, num_rollouts, first_rollout)
        return self.model.generate(
            **inputs, num_return_sequences=num_rollouts, logits_processor=processors, **_NATIVE_SAMPLING_OFF, **common
        )

    def _processors(self, prompt_length: int, hashes: list[str], num_rollouts: int, first_rollout: int) -> Any:
        from transformers import LogitsProcessorList

        rollout = self.rollout
        sampler = CounterSampler(
            [rollout_seed(rollout.seed, h, first_rollout + i) for h in hashes for i in range(num_rollouts)],
            prompt_length=prompt_length,
            temperature=rollout.temperature,
            top_k=rollout.top_k,
            top_p=rollout.top_p,
        )
        return LogitsProcessorList([sampler])

    def _encode(self, texts: list[str], images: list[list[Any]]) -> Any:
        if any(images):
            return self.processor(text=texts, images=images, padding=True, return_tensors="pt")
        return self.tokenizer(texts, padding=True, return_tensors="pt", add_special_tokens=False)

    def _too_long(self, lengths: list[int]) -> dict[int, int]:
        if self.context_length is None:
            return {}
        limit = self.context_length - self.rollout.max_new_tokens
        return {position: length for position, length in enumerate(lengths) if length > limit}


@dataclass
class PromptGroup:
    """Prompts of similar length, encoded and padded together, with their KV cache after the prefill."""

    rows: list[int]  #: positions in the request list, in encoding order
    texts: list[str]
    images: list[list[Any]]
    hashes: list[str]
    inputs: Any
    cache: Any = None  #: None when the model cannot reuse a prefilled cache: every round prefills again
    cache_name: str = "past_key_values"
    positions: Any = None  #: the prompts' position ids (mask-based; 3-D for M-RoPE), set with the cache


class PrefilledPrompts:
    """A batch of prompts prefilled once; `sample` decodes rollouts for any of them from the saved cache."""

    def __init__(self, engine: TransformersEngine, groups: list[PromptGroup], errors: dict[int, RowError]) -> None:
        self.engine = engine
        self.groups = groups
        self.errors = errors

    def sample(
        self, positions: Iterable[int], num_rollouts: int, *, first_rollout: int = 0, keep_cache: bool = True
    ) -> list[list[str] | RowError]:
        """Rollouts `first_rollout` to `first_rollout + num_rollouts - 1` for the rows at `positions`.

        Rows of one length group are decoded together in one `generate` call. With
        `keep_cache=False` the saved caches are consumed (for a last round: no copy is made).
        """
        positions = list(positions)
        wanted = set(positions)
        results: dict[int, list[str] | RowError] = dict(self.errors)
        for group in self.groups:
            chosen = [order for order, row in enumerate(group.rows) if row in wanted]
            if chosen:
                rollouts = self.engine._decode(group, chosen, num_rollouts, first_rollout, keep_cache)
                results.update({group.rows[order]: found for order, found in zip(chosen, rollouts)})
        return [results[position] for position in positions]


def _is_per_token(key: str) -> bool:
    """Processor outputs with one value per prompt token (`token_type_ids`, `mm_token_type_ids`, ...)."""
    return key.endswith("token_type_ids")


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
