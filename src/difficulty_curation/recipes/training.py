"""What the recipes share around a TRL trainer: one progress bar, and the training log kept on disk."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from difficulty_curation.errors import ConfigError, TrainingDivergedError
from difficulty_curation.outputs import check_output
from difficulty_curation.redact import get_logger

logger = get_logger(__name__)

#: The files that make a folder an earlier training output (`--overwrite` may replace it).
TRAINING_FILES = ("sft_options.json", "grpo_options.json")


class TrainingProgress(TrainerCallback):
    """One progress bar whose postfix shows the latest logged metrics; the logs go to `logging`, not the screen.

    Replaces Transformers' `ProgressCallback`, which writes every log dictionary under the bar.
    When the bar closes it stays on screen as a one-line summary (steps, time, last metrics).
    """

    def __init__(self, description: str, *, enabled: bool = True, metrics: tuple[str, ...] = ("loss",)) -> None:
        self.description = description
        self.enabled = enabled
        self.metrics = metrics
        self._bar: Any = None
        self._step = 0

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.enabled and state.is_world_process_zero:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=state.max_steps, desc=self.description, unit="step", file=sys.stderr)
        self._step = 0

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._bar is not None:
            self._bar.update(state.global_step - self._step)
        self._step = state.global_step

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        logs = logs or {}
        shown = {name: logs[name] for name in self.metrics if isinstance(logs.get(name), (int, float))}
        if shown:
            logger.info("step %d: %s", state.global_step, ", ".join(f"{k} {v:.4g}" for k, v in shown.items()))
            if self._bar is not None:
                self._bar.set_postfix_str(", ".join(f"{k} {v:.4g}" for k, v in shown.items()), refresh=False)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def use_progress(trainer: Any, progress: TrainingProgress) -> None:
    """Swap the trainer's default progress/printer callback for `progress`."""
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(progress)


def write_log_history(trainer: Any, path: Path) -> Path:
    """The trainer's logged metrics, one dictionary per logging step, as JSON."""
    path.write_text(json.dumps(trainer.state.log_history, indent=1))
    return path


def trainer_arguments(options: Any, out_dir: Path) -> dict[str, Any]:
    """The `TrainingArguments` both recipes set the same way: schedule, seed, logging, device, no checkpoints."""
    import torch

    on_gpu = torch.cuda.is_available()
    return {
        "output_dir": str(out_dir),
        "learning_rate": options.learning_rate,
        "warmup_steps": options.warmup_ratio,  # a float in [0, 1) is a share of the total steps
        "num_train_epochs": options.num_train_epochs,
        "max_steps": options.max_steps,
        "seed": options.seed,
        "data_seed": options.seed,
        "logging_steps": options.logging_steps,
        "save_strategy": "no",
        "report_to": [],
        "dataloader_num_workers": 0,
        "use_cpu": not on_gpu,
        "bf16": on_gpu and torch.cuda.is_bf16_supported(),
    }


def lora_config(options: Any) -> Any:
    """PEFT's `LoraConfig` on every linear layer, from the recipe's rank, alpha and dropout."""
    from peft import LoraConfig

    return LoraConfig(
        r=options.lora_rank,
        lora_alpha=options.lora_alpha,
        lora_dropout=options.lora_dropout,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )


def save_trained(
    trainer: Any, processor: Any, out_dir: Path, options_file: str, record: dict[str, Any], *, merge: bool
) -> Path:
    """Save the adapter (or full model) with the processor, the log history and the options; with
    `merge`, a LoRA-merged model in `out_dir/merged`. Returns the folder to load for evaluation."""
    trainer.save_model(str(out_dir))
    processor.save_pretrained(str(out_dir))
    write_log_history(trainer, out_dir / "log_history.json")
    (out_dir / options_file).write_text(json.dumps(record, indent=1, sort_keys=True, default=str))
    if not merge:
        return out_dir
    merged = trainer.model.merge_and_unload()
    merged.save_pretrained(str(out_dir / "merged"))
    processor.save_pretrained(str(out_dir / "merged"))
    return out_dir / "merged"


def check_training_output(out_dir: str | Path, model: str, *, overwrite: bool) -> Path:
    """Refuse `out_dir` if it would lose something (see `outputs.check_output`) or is the model being trained.

    Also refuses a `model` that looks like a local path but does not exist, before any download is tried.
    """
    from difficulty_curation.sources import looks_like_path

    if not Path(model).expanduser().exists() and looks_like_path(model):
        raise ConfigError(f"--model {model!r} does not exist; pass an existing model folder or a Hub id.")
    local = [model] if Path(model).expanduser().exists() else []
    return check_output(out_dir, overwrite=overwrite, earlier=TRAINING_FILES, protect=local)


def check_rows(dataset: Any) -> None:
    """Refuse a dataset with no rows to train on."""
    if len(dataset) == 0:
        raise ConfigError("the dataset has no rows to train on; pass a source or --split that holds rows.")


#: How many training rows `probe_loss` measures, before and after training.
PROBE_ROWS = 8
#: A run has collapsed when its probe loss ends above `COLLAPSE_FACTOR` times where it started and
#: at least `COLLAPSE_MARGIN` nats higher. Training lowers the loss of its own rows (GRPO leaves the
#: reference answers' loss about where it was); a loss that doubles by a nat or more per answer token
#: is a model that no longer gives those answers (an SFT step at learning rate 0.1 takes the demo
#: model from 0.04 to above 2, and from 100% to 0% on its own rows).
COLLAPSE_FACTOR = 2.0
COLLAPSE_MARGIN = 1.0


def probe_rows(dataset: Any, columns: Any) -> Any:
    """The first `PROBE_ROWS` rows of `dataset` as TRL prompt-completion rows: what `probe_loss` measures."""
    from difficulty_curation.recipes.formats import to_trl_format

    return to_trl_format(dataset.select(range(min(PROBE_ROWS, len(dataset)))), columns=columns)


def probe_loss(model: Any, processor: Any, rows: Any) -> float:
    """The mean loss of the answer tokens of `rows` (from `probe_rows`), computed as TRL's SFT does.

    Measured before and after training (`check_trained`), it tells a run that collapsed from one that
    trained: dropout off, no gradients, and no random numbers drawn, so training is unchanged by it.
    """
    import torch
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    batch = DataCollatorForVisionLanguageModeling(processor, completion_only_loss=True)([dict(row) for row in rows])
    device = next(model.parameters()).device
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            loss = model(**{key: value.to(device) for key, value in batch.items()}).loss
    finally:
        model.train(training)
    return float(loss)


def check_trained(trainer: Any, *, probe_before: float, probe_after: float) -> None:
    """Fail a run that diverged or collapsed: a logged loss or a trained weight that is not a finite
    number, or a probe loss (`probe_loss` before and after training) that exploded.

    Raises:
        TrainingDivergedError: naming the first bad step or tensor, or the probe loss before and
            after, and what to try; nothing is saved.
    """
    import torch

    advice = "nothing was saved. Lower --learning-rate (the paper uses 1e-5) and train again."
    for entry in trainer.state.log_history:
        loss = entry.get("loss", entry.get("train_loss"))
        if isinstance(loss, (int, float)) and not math.isfinite(loss):
            raise TrainingDivergedError(f"training diverged: the loss is {loss} at step {entry.get('step')}; {advice}")
    for name, parameter in trainer.model.named_parameters():
        if parameter.requires_grad and not torch.isfinite(parameter.detach()).all():
            raise TrainingDivergedError(f"training diverged: weights of {name} are not finite; {advice}")
    if not math.isfinite(probe_after) or (
        probe_after > COLLAPSE_FACTOR * probe_before and probe_after - probe_before >= COLLAPSE_MARGIN
    ):
        raise TrainingDivergedError(
            f"training collapsed: the loss of the answers of the first training rows rose from {probe_before:.4g} "
            f"to {probe_after:.4g}, so the model no longer gives the answers it was trained on; {advice}"
        )
