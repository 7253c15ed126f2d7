"""The training recipes' options, in a module light enough for the CLI to build its flags from.

Each field carries its help text (`config.option`); every field but those marked `flag=False` is a
flag of `curate sft` / `curate grpo` (named by `errors.cli_flag`), with the field's default and help.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from difficulty_curation.config import option, option_help
from difficulty_curation.errors import ConfigError, cli_flag


@dataclass(frozen=True)
class TrainingOptions:
    """What every recipe sets: a LoRA adapter on every linear layer, the schedule, the seed, logging."""

    lora_rank: int = option(32, help="LoRA rank (paper: 32; alpha is twice the rank).")
    lora_alpha: int | None = option(
        None, help="LoRA scaling alpha; None: twice the rank (the paper's 64 at rank 32).", flag=False
    )
    lora_dropout: float = option(0.05, help="Dropout on the LoRA layers.", flag=False)
    learning_rate: float = option(1e-5, help="Peak learning rate (paper: 1e-5).")
    warmup_ratio: float = option(0.1, help="Share of the steps over which the learning rate warms up.", flag=False)
    num_train_epochs: float = option(1.0, help="Passes over the data.")
    max_steps: int = option(-1, help="Stop after this many steps (-1: train --epochs epochs).")
    batch_size: int = option(8, help="Rows per step.")
    seed: int = option(0, help="Training seed.")
    logging_steps: int = option(10, help="Log the metrics every this many steps.", flag=False)

    def __post_init__(self) -> None:
        if self.lora_alpha is None:  # the paper's rule: alpha is twice the rank
            object.__setattr__(self, "lora_alpha", 2 * self.lora_rank)


@dataclass(frozen=True)
class SFTOptions(TrainingOptions):
    """SFT options; the defaults are the paper's."""

    full: bool = option(False, help="Full fine-tuning instead of LoRA (the paper's cold start).")
    gradient_accumulation_steps: int = option(
        1, help="Batches whose gradients are summed per optimizer step.", flag=False
    )


@dataclass(frozen=True)
class GRPOOptions(TrainingOptions):
    """GRPO options; the defaults are the paper's RL baseline."""

    num_train_epochs: float = option(TrainingOptions.num_train_epochs, help="Passes over the prompts.")
    batch_size: int = option(
        TrainingOptions.batch_size, help="Prompts per step; each gets --num-generations completions."
    )
    warmup_ratio: float = option(0.0, help=option_help("warmup_ratio", TrainingOptions), flag=False)
    logging_steps: int = option(
        1,
        help="Log the mean reward, its spread and the loss every this many steps (each GRPO step is costly).",
        flag=False,
    )
    num_generations: int = option(8, help="Completions per prompt (paper: 8).")
    temperature: float = option(0.9, help="Sampling temperature (paper: 0.9).")
    beta: float = option(0.04, help="KL coefficient against the model without the adapter (paper: 0.04).")
    max_completion_length: int = option(128, help="Longest completion, in tokens.")
    #: needs `pip install 'difficulty-curation[vllm]'`
    use_vllm: bool = option(False, help="Generate with vLLM inside TRL (GPU).")


#: The largest learning rate accepted. Adam-style optimizers move every weight by about the learning
#: rate each step; above 1 that is more than a weight's own size, so the model collapses within a
#: step (fine-tuning uses 1e-6 to 1e-3; the paper 1e-5). Rates up to this can still collapse a run:
#: `training.check_trained` catches that after training.
MAX_LEARNING_RATE = 1.0

#: Each option's tests, in order, and what each says the option must be, checked before anything
#: loads (`check_options`); the first that fails is the message.
_CHECKS = {
    "lora_rank": (lambda v: v >= 1, "an integer >= 1"),
    "lora_alpha": (lambda v: v >= 1, "an integer >= 1"),
    "lora_dropout": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "learning_rate": (
        (lambda v: v > 0, "a number > 0"),
        (
            lambda v: v <= MAX_LEARNING_RATE,
            f"at most {MAX_LEARNING_RATE:g}: a larger rate moves each weight by more than its size every step "
            "and collapses the model (the paper uses 1e-5)",
        ),
    ),
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
    """Refuse an option no training can use (rank 0, batch 0, a rate <= 0, above 1 or not finite), naming it.

    Raises:
        ConfigError: the first bad option, with its CLI flag and what it must be.
    """
    for field in fields(options):
        value = getattr(options, field.name)
        if field.name not in _CHECKS or isinstance(value, bool):
            continue
        if field.name == "num_train_epochs" and options.max_steps >= 1:
            continue  # --max-steps decides how long training runs
        checks = _CHECKS[field.name]
        for test, must_be in checks if isinstance(checks[0], tuple) else (checks,):
            if not isinstance(value, (int, float)) or not math.isfinite(value) or not test(value):
                raise ConfigError(f"{field.name} ({cli_flag(field.name)}) must be {must_be}, got {value!r}.")


#: The options that decide whether an answer is correct (`ScoringConfig` fields): `curate grpo` and
#: `curate eval` judge as the data was scored unless told otherwise (`judging_options`).
JUDGING_OPTIONS = ("verifier", "answer_extractor", "answer_pattern", "truncated")


def judging_options(provenance: Mapping[str, Any] | None, **chosen: Any) -> dict[str, Any]:
    """How answers are judged: each option in `chosen` that is not None, else as the data was scored (its
    provenance record, `provenance.read_provenance`), else `ScoringConfig`'s default.

    The record's `answer_pattern` goes with its extractor: choosing another extractor or pattern drops it.
    Values are checked where they are used (`ScoringConfig`).

    Example:
        >>> judging_options({"answer_extractor": "answer-is", "truncated": "exclude"}, verifier="math")
        {'verifier': 'math', 'answer_extractor': 'answer-is', 'answer_pattern': None, 'truncated': 'exclude'}
    """
    from difficulty_curation.config import ScoringConfig

    unknown = sorted(set(chosen) - set(JUDGING_OPTIONS))
    if unknown:
        raise ConfigError(f"unknown judging option(s) {unknown}; the options are: {', '.join(JUDGING_OPTIONS)}.")
    record = provenance if isinstance(provenance, Mapping) else {}
    options = {name: record.get(name, getattr(ScoringConfig, name)) for name in JUDGING_OPTIONS}
    chosen = {name: value for name, value in chosen.items() if value is not None}
    if {"answer_extractor", "answer_pattern"} & set(chosen):
        options.update(answer_extractor=ScoringConfig.answer_extractor, answer_pattern=None)
    return {**options, **chosen}
