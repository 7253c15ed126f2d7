"""Picking and starting an engine for a config: the one place that knows every backend.

The backends import `engines.base`; only this module imports the backends (lazily), so the
engine modules have no import cycle.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from difficulty_curation.config import ScoringConfig
from difficulty_curation.engines.base import RolloutEngine
from difficulty_curation.errors import ConfigError, ModelLoadError


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
