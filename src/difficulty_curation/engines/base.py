"""The engine protocol and backend selection."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

from difficulty_curation.engines.adaptive import IsDecided
from difficulty_curation.errors import CurationError, EngineError, RowError
from difficulty_curation.prompts import PromptRequest
from difficulty_curation.redact import get_logger, redact

logger = get_logger(__name__)


@runtime_checkable
class RolloutEngine(Protocol):
    """Anything that samples `num_rollouts` completions for each request, in request order."""

    def generate(
        self, requests: Sequence[PromptRequest], num_rollouts: int, *, first_rollout: int = 0
    ) -> list[list[str] | RowError]:
        """Return `num_rollouts` completions per request (rollouts `first_rollout` onwards), in order.

        A request the engine cannot serve (say, a prompt longer than the context) gets a `RowError`.
        """
        ...


@runtime_checkable
class AdaptiveEngine(Protocol):
    """An engine that draws adaptively itself, without rounds (optional; the scorer uses it where present).

    Rollout `j` of a row must be the same draw whatever `num_rollouts` or the batch, so that a row's
    rollouts are always a prefix of its full draw. Engines without this method get rounds of
    `generate(..., first_rollout=...)` from the scorer.
    """

    def generate_adaptive(
        self, requests: Sequence[PromptRequest], num_rollouts: int, is_decided: IsDecided
    ) -> list[list[str] | RowError]:
        """Up to `num_rollouts` completions per request: the shortest prefix of rollouts 0, 1, ... for which
        `is_decided(position, completions)` holds (`position` indexes `requests`), else all of them.

        Rollouts finished past that prefix are dropped, so the result does not depend on timing. A
        stopped call attaches the rows it finished to the exception as `completed_requests`.
        """
        ...


class PromptSession(Protocol):
    """Rollouts in rounds for a fixed list of requests (see `open_session`)."""

    def sample(
        self, positions: Iterable[int], num_rollouts: int, *, first_rollout: int = 0
    ) -> list[list[str] | RowError]:
        """Rollouts `first_rollout` onwards for the requests at `positions`, in that order."""
        ...


def open_session(engine: RolloutEngine, requests: Sequence[PromptRequest]) -> PromptSession:
    """`engine.prefill(requests)` where the engine can keep prompts prefilled between rounds.

    Other engines (vLLM caches prefixes itself, an HTTP server is out of our hands) get a session
    that calls `engine.generate` for each round.
    """
    prefill = getattr(engine, "prefill", None)
    return prefill(requests) if prefill is not None else _GenerateEachRound(engine, requests)


class _GenerateEachRound:
    def __init__(self, engine: RolloutEngine, requests: Sequence[PromptRequest]) -> None:
        self.engine = engine
        self.requests = requests

    def sample(
        self, positions: Iterable[int], num_rollouts: int, *, first_rollout: int = 0
    ) -> list[list[str] | RowError]:
        chosen = [self.requests[position] for position in positions]
        return self.engine.generate(chosen, num_rollouts, first_rollout=first_rollout)


def generate_isolating_rows(
    engine: RolloutEngine, requests: Sequence[PromptRequest], num_rollouts: int, first_rollout: int, *, column: str
) -> list[list[str] | RowError]:
    """`engine.generate`, where a batch that fails as a whole is halved until the failing rows are found.

    One row can fail a whole batch (a literal image token in its text trips the processor's count
    check, say); bisecting lets every other row score and makes the culprit a `RowError` on `column`.
    Failures that are not a row's fault (`EngineError`, out of memory) and our own errors stop the run;
    what finished before such a stop travels with it as `completed_requests` (position -> rollouts).
    """
    try:
        return engine.generate(requests, num_rollouts, first_rollout=first_rollout)
    except CurationError:
        raise
    except Exception as error:
        if type(error).__name__ == "OutOfMemoryError" or isinstance(error, MemoryError):
            raise EngineError(
                f"the engine ran out of memory ({error}); lower --batch-size or --max-new-tokens "
                "and run the same command again to resume."
            ) from None
        if len(requests) == 1:
            message = redact(f"{type(error).__name__}: {error}".strip().splitlines()[0])
            return [RowError(column, f"the engine failed on this row ({message})")]
        logger.warning(
            "a batch of %d rows failed as a whole (%s: %s); splitting it to find the failing rows",
            len(requests),
            type(error).__name__,
            error,
        )
    middle = len(requests) // 2
    head = generate_isolating_rows(engine, requests[:middle], num_rollouts, first_rollout, column=column)
    try:
        tail = generate_isolating_rows(engine, requests[middle:], num_rollouts, first_rollout, column=column)
    except BaseException as error:  # positions of what finished, counted in this call's requests
        finished = {position: outcome for position, outcome in enumerate(head) if isinstance(outcome, list)}
        inner = getattr(error, "completed_requests", None) or {}
        finished.update({middle + position: outcome for position, outcome in inner.items()})
        error.completed_requests = finished  # type: ignore[attr-defined]
        raise
    return head + tail


def render_chat(processor: object, messages: list[dict], template_kwargs: dict[str, Any] | None = None) -> str:
    """The prompt text for `messages` under the model's chat template, ending with the assistant turn.

    Text-only conversations are flattened to plain-string contents, which every chat template accepts.
    `template_kwargs` are variables for the template (`ScoringConfig.chat_template_kwargs`, e.g.
    `enable_thinking=False`).
    """
    has_images = any(
        isinstance(part, dict) and part.get("type") == "image"
        for message in messages
        if not isinstance(message["content"], str)
        for part in message["content"]
    )
    if not has_images:
        messages = [{**m, "content": _flatten_text(m["content"])} for m in messages]
    return processor.apply_chat_template(  # type: ignore[attr-defined]
        messages, add_generation_prompt=True, tokenize=False, **(template_kwargs or {})
    )


def _flatten_text(content: str | list[dict]) -> str:
    if isinstance(content, str):
        return content
    return "".join(part.get("text") or "" for part in content if part.get("type") == "text")
