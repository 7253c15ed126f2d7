"""The training recipes' options, in a module light enough for the CLI to read its defaults from."""

from __future__ import annotations

from dataclasses import dataclass


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
