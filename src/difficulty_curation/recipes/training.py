"""What the recipes share around a TRL trainer: one progress bar, and the training log kept on disk."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback

logger = logging.getLogger(__name__)


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
