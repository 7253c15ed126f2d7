"""The training recipes' options, in a module light enough for the CLI to read its defaults from."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from difficulty_curation.errors import ConfigError


@dataclass(frozen=True)
class TrainingOptions:
    """What every recipe sets: a LoRA adapter on every linear layer, the schedule, the seed, logging."""

    lora_rank: int = 32
    lora_alpha: int = 64
    lora_dropout: float = 0.05
    learning_rate: float = 1e-5
    warmup_ratio: float = 0.1
    num_train_epochs: float = 1.0
    #: stop after this many optimizer steps (-1: train `num_train_epochs` epochs)
    max_steps: int = -1
    #: rows (prompts) per optimizer step
    batch_size: int = 8
    seed: int = 0
    #: log the metrics every this many steps
    logging_steps: int = 10


@dataclass(frozen=True)
class SFTOptions(TrainingOptions):
    """SFT options; the defaults are the paper's."""

    #: full fine-tuning instead of LoRA (the paper's cold start)
    full: bool = False
    gradient_accumulation_steps: int = 1


@dataclass(frozen=True)
class GRPOOptions(TrainingOptions):
    """GRPO options; the defaults are the paper's RL baseline."""

    warmup_ratio: float = 0.0
    #: each GRPO step is costly: log the mean reward, its spread and the loss every step
    logging_steps: int = 1
    #: completions sampled per prompt (the group whose rewards are compared)
    num_generations: int = 8
    temperature: float = 0.9
    #: KL coefficient against the model without the adapter
    beta: float = 0.04
    max_completion_length: int = 128
    #: generate with vLLM inside TRL (GPU; `pip install 'difficulty-curation[vllm]'`)
    use_vllm: bool = False


#: Each option's test and what it must be, checked before anything loads (`check_options`).
_CHECKS = {
    "lora_rank": (lambda v: v >= 1, "an integer >= 1"),
    "lora_alpha": (lambda v: v >= 1, "an integer >= 1"),
    "lora_dropout": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "learning_rate": (lambda v: v > 0, "a number > 0"),
    "warmup_ratio": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "num_train_epochs": (lambda v: v > 0, "a number > 0 (or pass --max-steps)"),
    "max_steps": (lambda v: v == -1 or v >= 1, "an integer >= 1, or -1 to train --epochs epochs"),
    "batch_size": (lambda v: v >= 1, "an integer >= 1"),
    "logging_steps": (lambda v: v >= 1, "an integer >= 1"),
    "gradient_accumulation_steps": (lambda v: v >= 1, "an integer >= 1"),
    "num_generations": (lambda v: v >= 2, "an integer >= 2 (GRPO compares completions)"),
    "temperature": (lambda v: v > 0, "a number > 0"),
    "beta": (lambda v: v >= 0, "a number >= 0"),
    "max_completion_length": (lambda v: v >= 1, "an integer >= 1"),
}


def check_options(options: TrainingOptions) -> None:
    """Refuse an option no training can use (rank 0, batch 0, a negative or infinite rate), naming it.

    Raises:
        ConfigError: the first bad option, with its CLI flag and what it must be.
    """
    for field in fields(options):
        value = getattr(options, field.name)
        if field.name not in _CHECKS or isinstance(value, bool):
            continue
        if field.name == "num_train_epochs" and options.max_steps >= 1:
            continue  # --max-steps decides how long training runs
        test, must_be = _CHECKS[field.name]
        if (isinstance(value, float) and not math.isfinite(value)) or not test(value):
            flag = "--epochs" if field.name == "num_train_epochs" else "--" + field.name.replace("_", "-")
            raise ConfigError(f"{field.name} ({flag}) must be {must_be}, got {value!r}.")
