"""SFT recipe: TRL's `SFTTrainer` with a PEFT LoRA adapter (or full fine-tuning), paper defaults.

Defaults follow DC-SFT: LoRA rank 32, alpha 64, dropout 0.05 on all linear layers, learning rate
1e-5, warm-up over the first 10% of steps; the loss is on the answer tokens only.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from datasets import Dataset

from difficulty_curation.config import ScoringConfig
from difficulty_curation.models import load_training_model
from difficulty_curation.recipes.formats import to_trl_format

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SFTOptions:
    """Training options; the defaults are the paper's."""

    full: bool = False
    lora_rank: int = 32
    lora_alpha: int = 64
    lora_dropout: float = 0.05
    learning_rate: float = 1e-5
    warmup_ratio: float = 0.1
    num_train_epochs: float = 1.0
    max_steps: int = -1
    batch_size: int = 8
    gradient_accumulation_steps: int = 1
    seed: int = 0
    logging_steps: int = 10


def sft(
    dataset: Dataset,
    model: str,
    out_dir: str | Path,
    *,
    options: SFTOptions | None = None,
    merge: bool = False,
    revision: str | None = None,
    prompt_column: str = ScoringConfig.prompt_column,
    answer_column: str = ScoringConfig.answer_column,
    image_column: str | None = ScoringConfig.image_column,
    system_prompt: str | None = None,
    progress: bool = True,
    progress_label: str = "SFT",
) -> Path:
    """Fine-tune `model` on `dataset` (rows with question, answer, images) and save to `out_dir`.

    Saves the LoRA adapter (or the full model) with the processor; with `merge=True` also a merged
    model in `out_dir/merged`, loadable like any model, and `log_history.json` (the logged losses).
    Returns the folder to load for evaluation (`out_dir/merged`, or `out_dir`). Progress is one bar
    labelled `progress_label` (none with `progress=False`); the losses go to `logging`.

    Example:
        >>> sft(filter_difficulty(scored, "medium"), "my-org/my-vlm", "sft-m/", merge=True)  # doctest: +SKIP
    """
    import torch
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from difficulty_curation.recipes.training import TrainingProgress, use_progress, write_log_history

    options = options or SFTOptions()
    on_gpu = torch.cuda.is_available()
    out_dir = Path(out_dir)
    train = to_trl_format(
        dataset,
        prompt_column=prompt_column,
        answer_column=answer_column,
        image_column=image_column,
        system_prompt=system_prompt,
    )
    processor, network = load_training_model(model, revision)
    config = SFTConfig(
        output_dir=str(out_dir),
        learning_rate=options.learning_rate,
        warmup_steps=options.warmup_ratio,  # a float in [0, 1) is a share of the total steps
        num_train_epochs=options.num_train_epochs,
        max_steps=options.max_steps,
        per_device_train_batch_size=options.batch_size,
        gradient_accumulation_steps=options.gradient_accumulation_steps,
        seed=options.seed,
        data_seed=options.seed,
        logging_steps=options.logging_steps,
        save_strategy="no",
        report_to=[],
        max_length=None,
        completion_only_loss=True,
        dataloader_num_workers=0,
        use_cpu=not on_gpu,
        bf16=on_gpu and torch.cuda.is_bf16_supported(),
    )
    peft_config = None
    if not options.full:
        peft_config = LoraConfig(
            r=options.lora_rank,
            lora_alpha=options.lora_alpha,
            lora_dropout=options.lora_dropout,
            target_modules="all-linear",
            task_type="CAUSAL_LM",
        )
    trainer = SFTTrainer(
        model=network, args=config, train_dataset=train, processing_class=processor, peft_config=peft_config
    )
    use_progress(trainer, TrainingProgress(progress_label, enabled=progress))
    result = trainer.train()
    logger.info("trained %d steps, mean loss %.4f", result.global_step, result.training_loss)
    trainer.save_model(str(out_dir))
    processor.save_pretrained(str(out_dir))
    write_log_history(trainer, out_dir / "log_history.json")
    (out_dir / "sft_options.json").write_text(_json({**asdict(options), "base_model": model, "rows": len(dataset)}))
    if options.full or not merge:
        return out_dir
    merged = trainer.model.merge_and_unload()
    merged.save_pretrained(str(out_dir / "merged"))
    processor.save_pretrained(str(out_dir / "merged"))
    return out_dir / "merged"


def _json(payload: dict[str, Any]) -> str:
    import json

    return json.dumps(payload, indent=1, sort_keys=True)
