"""The engine protocol and backend selection."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from difficulty_curation.config import ScoringConfig
from difficulty_curation.errors import ConfigError, ModelLoadError, RowError
from difficulty_curation.prompts import PromptRequest


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


def resolve_backend(backend: str) -> str:
    """'auto' picks vLLM when it is installed and a CUDA GPU is present, else transformers."""
    if backend != "auto":
        return backend
    if importlib.util.find_spec("vllm") is not None:
        import torch

        if torch.cuda.is_available():
            return "vllm"
    return "transformers"


def load_engine(config: ScoringConfig) -> RolloutEngine:
    """Load the engine for `config.backend` (the model is loaded here, once)."""
    backend = resolve_backend(config.backend)
    if backend != "openai":
        check_model_source(config.model, config.revision)
    if backend == "openai":
        from difficulty_curation.engines.openai import OpenAIEngine

        return OpenAIEngine(config)
    if backend == "vllm":
        from difficulty_curation.engines.vllm import VLLMEngine

        return VLLMEngine(config)
    from difficulty_curation.engines.transformers import TransformersEngine

    return TransformersEngine(config)


_TRUE = ("1", "true", "yes", "on")


def check_model_source(model: str, revision: str | None = None) -> None:
    """Fail at once, naming `model`, when it cannot be loaded: a path that does not exist or is a file,
    a name that is neither a folder nor a Hub id, or a Hub id missing from the cache while offline.

    Without this, transformers would take a missing path for a Hub id and retry for minutes.

    Raises:
        ModelLoadError: the path does not exist, is a file, or the model is not cached while offline.
        ConfigError: `model` is neither an existing folder nor of the form `org/name`.
    """
    path = Path(model).expanduser()
    if path.is_file():
        raise ModelLoadError(
            f"model {model!r} is a file; pass the folder that holds its config.json (made by save_pretrained) "
            "or a Hub id like org/name."
        )
    if path.is_dir():
        return
    if path.is_absolute() or model.startswith(("./", "../", "~", ".\\")) or model in (".", ".."):
        raise ModelLoadError(
            f"model path {model!r} does not exist; pass an existing folder made by save_pretrained or a Hub id."
        )
    from huggingface_hub import constants, try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(model)
    except HFValidationError:
        raise ConfigError(
            f"model {model!r} is neither an existing folder nor a Hub id like org/name; check the spelling."
        ) from None
    offline = constants.HF_HUB_OFFLINE or any(
        os.environ.get(name, "").lower() in _TRUE for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )
    if offline and not isinstance(try_to_load_from_cache(model, "config.json", revision=revision), str):
        raise ModelLoadError(
            f"model {model!r} is not in the local Hub cache and HF_HUB_OFFLINE is set; download it first "
            f"(`hf download {model}`), unset HF_HUB_OFFLINE, or pass a local folder."
        )


def derive_seed(seed: int, *keys: str) -> int:
    """A 63-bit seed from the run's seed and content hashes: same inputs, same seed, in any process."""
    digest = hashlib.sha256(str(seed).encode())
    for key in keys:
        digest.update(key.encode())
    return int.from_bytes(digest.digest()[:8], "big") >> 1


def render_chat(processor: object, messages: list[dict]) -> str:
    """The prompt text for `messages` under the model's chat template, ending with the assistant turn.

    Text-only conversations are flattened to plain-string contents, which every chat template accepts.
    """
    has_images = any(
        isinstance(part, dict) and part.get("type") == "image"
        for message in messages
        if not isinstance(message["content"], str)
        for part in message["content"]
    )
    if not has_images:
        messages = [{**m, "content": _flatten_text(m["content"])} for m in messages]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)  # type: ignore[attr-defined]


def _flatten_text(content: str | list[dict]) -> str:
    if isinstance(content, str):
        return content
    return "".join(part.get("text") or "" for part in content if part.get("type") == "text")
