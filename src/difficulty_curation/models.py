"""Loading a model and its processor from a local folder or the Hub: one loader for scoring and training."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from difficulty_curation.errors import ModelLoadError
from difficulty_curation.redact import get_logger

logger = get_logger(__name__)

#: The engine options `from_pretrained` takes; the others are for vLLM and are not used here.
TRANSFORMERS_ENGINE_OPTIONS = ("dtype", "attn_implementation", "device_map")


def load_model_and_processor(
    model: str, revision: str | None, device: str, *, options: Mapping[str, Any] | None = None
) -> tuple[Any, Any]:
    """Load processor and model the way users do: `AutoProcessor` + `AutoModelForImageTextToText` (or causal LM).

    `options` are the config's engine options: `dtype` (default bfloat16 on CUDA, float32 on CPU),
    `attn_implementation` and `device_map` go to `from_pretrained`; the rest (vLLM's) are ignored.
    """
    import torch
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor

    options = dict(options or {})
    check_transformers_options(options)
    loader_options = {key: options[key] for key in TRANSFORMERS_ENGINE_OPTIONS if key in options}
    dtype = loader_options.pop("dtype", torch.bfloat16 if device.startswith("cuda") else torch.float32)
    if isinstance(dtype, str) and dtype != "auto":
        dtype = getattr(torch, dtype, None)
        if not isinstance(dtype, torch.dtype):
            raise ModelLoadError(
                f"engine option dtype={options['dtype']!r} is not a torch dtype; use e.g. float32, bfloat16 or auto."
            )
    try:
        processor = AutoProcessor.from_pretrained(model, revision=revision)
    except (OSError, ValueError) as error:
        raise ModelLoadError(
            f"could not load a processor for model {model!r}: {error}. Pass a local folder made by "
            "save_pretrained (config.json, tokenizer, processor files) or a Hub id."
        ) from None
    try:
        try:
            loaded = AutoModelForImageTextToText.from_pretrained(
                model, revision=revision, dtype=dtype, **loader_options
            )
        except ValueError:  # not an image-text-to-text architecture: a text-only causal LM
            loaded = AutoModelForCausalLM.from_pretrained(model, revision=revision, dtype=dtype, **loader_options)
    except (OSError, ValueError, ImportError, SafetensorError) as error:  # missing, incomplete or corrupt weights
        raise ModelLoadError(
            f"could not load model {model!r}: {error}. Check that its weights are complete (download or save it again)."
        ) from None
    logger.info("loaded %s (%s) on %s", model, type(loaded).__name__, device)
    if "device_map" in loader_options:  # accelerate placed the weights already
        return processor, loaded.eval()
    return processor, loaded.to(device).eval()


def check_transformers_options(options: Mapping[str, Any]) -> None:
    """Refuse, before any load, an engine option `from_pretrained` cannot use, naming it; list the ones ignored.

    Raises:
        ConfigError: an unknown `attn_implementation`, or a `device_map` naming a GPU this machine lacks.
    """
    import torch
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    from difficulty_curation.errors import ConfigError

    ignored = sorted(set(options) - set(TRANSFORMERS_ENGINE_OPTIONS))
    if ignored:
        logger.warning(
            "the transformers backend does not use engine options %s (only %s); they are vLLM's or misspelled",
            ", ".join(ignored),
            ", ".join(TRANSFORMERS_ENGINE_OPTIONS),
        )
    attention = options.get("attn_implementation")
    known = sorted({"eager", *(name for key in ALL_ATTENTION_FUNCTIONS for name in key.split("|"))})
    if attention is not None and (not isinstance(attention, str) or ("/" not in attention and attention not in known)):
        raise ConfigError(
            f"engine option attn_implementation={attention!r} is not known; use one of {', '.join(known)} "
            "(or a kernels-hub repo id)."
        )
    device_map = options.get("device_map")
    if isinstance(device_map, str) and device_map.startswith("cuda"):
        index = int(device_map.partition(":")[2] or 0) if device_map.partition(":")[2].isdigit() else 0
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if index >= count:
            raise ConfigError(
                f"engine option device_map={device_map!r} names a GPU this machine does not have "
                f"({count} CUDA device(s)); use device_map=auto, cpu, or cuda:N with N < {max(count, 1)}."
            )


def load_training_model(model: str, revision: str | None = None) -> tuple[Any, Any]:
    """Processor and float32 model for a training recipe (the trainer moves it to the GPU and casts).

    Raises:
        ModelLoadError: the model or its processor cannot be loaded.
    """
    return load_model_and_processor(model, revision, "cpu", options={"dtype": "float32"})
