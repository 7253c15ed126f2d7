"""SFT recipe: TRL's `SFTTrainer` with a PEFT LoRA adapter (or full fine-tuning), paper defaults.

Defaults follow DC-SFT: LoRA rank 32, alpha 64, dropout 0.05 on all linear layers, learning rate
1e-5, warm-up over the first 10% of steps; the loss is on the answer tokens only.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from datasets import Dataset

from difficulty_curation.columns import Columns
from difficulty_curation.models import load_training_model
from difficulty_curation.recipes.formats import to_trl_format
from difficulty_curation.recipes.options import SFTOptions
from difficulty_curation.redact import get_logger

logger = get_logger(__name__)


def sft(
    dataset: Dataset,
    model: str,
    out_dir: str | Path,
    *,
    options: SFTOptions | None = None,
    merge: bool = False,
    overwrite: bool = False,
    revision: str | None = None,
    columns: Columns = Columns(),
    progress: bool = True,
    progress_label: str = "SFT",
) -> Path:
    """Fine-tune `model` on `dataset` (rows with question, answer, images, read from `columns`) and save to `out_dir`.

    Saves the LoRA adapter (or the full model) with the processor; with `merge=True` also a merged
    model in `out_dir/merged`, loadable like any model, and `log_history.json` (the logged losses).
    Returns the folder to load for evaluation (`out_dir/merged`, or `out_dir`). Progress is one bar
    labelled `progress_label` (none with `progress=False`); the losses go to `logging`.

    Everything is written aside and swapped in as `out_dir` only once saved whole (see
    `difficulty_curation.outputs`): a non-empty `out_dir` is refused unless `overwrite` and it is an
    earlier training output; the model being trained and run folders are never written into.

    Raises:
        ConfigError: a bad option, no rows, or an `out_dir` that would lose something.
        MissingDependencyError: TRL is not installed (checked before anything loads).
        TrainingDivergedError: the loss or the weights are not finite, or the run collapsed (the loss of the
            first training rows' answers exploded, see `training.check_trained`); nothing is saved.

    Example:
        >>> sft(filter_difficulty(scored, "medium"), "my-org/my-vlm", "sft-m/", merge=True)  # doctest: +SKIP
    """
    from difficulty_curation.errors import require
    from difficulty_curation.outputs import write_aside
    from difficulty_curation.recipes.options import check_options
    from difficulty_curation.recipes.training import (
        TRAINING_FILES,
        TrainingProgress,
        check_rows,
        check_trained,
        check_training_output,
        lora_config,
        probe_loss,
        probe_rows,
        save_trained,
        trainer_arguments,
        use_progress,
    )

    options = options or SFTOptions()
    check_options(options)
    require("trl", "train", "the SFT recipe", package="TRL")
    check_rows(dataset)
    out_dir = check_training_output(out_dir, model, overwrite=overwrite)
    train = to_trl_format(dataset, columns=columns)
    from trl import SFTConfig, SFTTrainer

    processor, network = load_training_model(model, revision)
    local = [model] if Path(model).expanduser().exists() else []
    with write_aside(out_dir, overwrite=overwrite, earlier=TRAINING_FILES, protect=local) as staging:
        config = SFTConfig(
            **trainer_arguments(options, staging),
            per_device_train_batch_size=options.batch_size,
            gradient_accumulation_steps=options.gradient_accumulation_steps,
            max_length=None,
            completion_only_loss=True,
        )
        peft_config = None if options.full else lora_config(options)
        trainer = SFTTrainer(
            model=network, args=config, train_dataset=train, processing_class=processor, peft_config=peft_config
        )
        use_progress(trainer, TrainingProgress(progress_label, enabled=progress))
        probe = probe_rows(dataset, columns)
        probe_before = probe_loss(trainer.model, processor, probe)
        result = trainer.train()
        probe_after = probe_loss(trainer.model, processor, probe)
        check_trained(trainer, probe_before=probe_before, probe_after=probe_after)
        logger.info("trained %d steps, mean loss %.4f", result.global_step, result.training_loss)
        probed = {"probe_loss_before": probe_before, "probe_loss_after": probe_after}
        record = {**asdict(options), "base_model": model, "rows": len(dataset), **probed}
        saved = save_trained(trainer, processor, staging, "sft_options.json", record, merge=merge and not options.full)
    return out_dir / saved.relative_to(staging)
