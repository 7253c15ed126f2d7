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
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

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
    processor = load_processor(model, revision)
    try:
        try:
            loaded = AutoModelForImageTextToText.from_pretrained(
                model, revision=revision, dtype=dtype, **loader_options
            )
        except ValueError:  # not an image-text-to-text architecture: a text-only causal LM
            loaded = AutoModelForCausalLM.from_pretrained(model, revision=revision, dtype=dtype, **loader_options)
    except ImportError as error:  # the architecture needs a package that is not installed
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelLoadError(f"could not load model {model!r}: a package it needs is missing: {first_line}") from None
    except (OSError, ValueError, SafetensorError) as error:  # missing, incomplete or corrupt weights
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


def load_processor(model: str, revision: str | None = None) -> Any:
    """`AutoProcessor.from_pretrained`, or, where only its video part cannot load, the processor without it.

    Qwen2-VL, Qwen2.5-VL, Qwen3-VL, InternVL, LLaVA-OneVision and SmolVLM processors carry a video
    processor that needs torchvision. Scoring images needs none of it, so when torchvision is missing
    the family's own processor class is built from its image processor and tokenizer alone.

    Raises:
        ModelLoadError: the processor cannot be loaded, naming what to install or fix.
    """
    from transformers import AutoProcessor

    try:
        return AutoProcessor.from_pretrained(model, revision=revision)
    except (OSError, ValueError, ImportError, TypeError) as error:
        image_only = _image_only_processor_class(model, revision)
        if image_only is None:
            raise _processor_error(model, error) from None
        try:
            processor = image_only.from_pretrained(model, revision=revision)
        except (OSError, ValueError, ImportError, TypeError) as second:
            raise _processor_error(model, second) from None
        logger.info("loaded %s without its video processor (torchvision is not installed)", model)
        return processor


def image_only_processor(processor_class: type) -> type:
    """`processor_class` without its `video_processor`: same image and text processing, no torchvision needed.

    transformers reads a processor's `__init__` parameters (its code, not only its signature) to know
    what to load and save, so the subclass gets an `__init__` with the family's own parameters less
    `video_processor`, and the family's defaults.
    """
    import inspect

    parameters = [
        parameter
        for name, parameter in inspect.signature(processor_class.__init__).parameters.items()
        if name not in ("self", "video_processor")
        and parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
    ]
    defaults = {f"_default_{p.name}": None if p.default is p.empty else p.default for p in parameters}
    names = [parameter.name for parameter in parameters]
    source = (
        f"def __init__(self, {', '.join(f'{name}=_default_{name}' for name in names)}, **kwargs):\n"
        f"    _base.__init__(self, video_processor=None, {', '.join(f'{name}={name}' for name in names)}, **kwargs)\n"
    )
    namespace: dict[str, Any] = {"_base": processor_class, **defaults}
    exec(source, namespace)  # a real function, so that `__init__.__code__` names the parameters
    name = processor_class.__name__
    return type(name, (processor_class,), {"__init__": namespace["__init__"], "__qualname__": name})


def _image_only_processor_class(model: str, revision: str | None) -> type | None:
    """The image-only form of the model's processor class when torchvision is what is missing, else None."""
    import importlib.util
    import json

    import transformers
    from transformers.utils import cached_file

    if importlib.util.find_spec("torchvision") is not None:
        return None
    for name in ("processor_config.json", "preprocessor_config.json"):
        try:
            path = cached_file(model, name, revision=revision, _raise_exceptions_for_missing_entries=False)
        except OSError:
            path = None
        if path is None:
            continue
        with open(path, encoding="utf-8") as handle:
            class_name = json.load(handle).get("processor_class")
        processor_class = getattr(transformers, class_name, None) if isinstance(class_name, str) else None
        if processor_class is not None and "video_processor" in processor_class.get_attributes():
            return image_only_processor(processor_class)
    return None


def _processor_error(model: str, error: Exception) -> ModelLoadError:
    if isinstance(error, ImportError) or "torchvision" in str(error).lower():
        return ModelLoadError(
            f"could not load the processor of model {model!r}: it needs torchvision, which is not installed "
            f"({type(error).__name__}). Install the torchvision build that matches your torch."
        )
    return ModelLoadError(
        f"could not load a processor for model {model!r}: {error}. Pass a local folder made by "
        "save_pretrained (config.json, tokenizer, processor files) or a Hub id."
    )
