"""The one progress helper: rows done/total, rollouts per second, ETA and failed rows on one line."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any

from tqdm.auto import tqdm


@dataclass
class BatchReport:
    """What one call of the scorer did, for progress displays."""

    rows: int
    failed_rows: int
    rollouts: int
    seconds: float


class RolloutProgress:
    """A single updating progress line for a scoring run; silent when `enabled=False`."""

    def __init__(
        self, total_rows: int, *, enabled: bool = True, description: str = "Scoring", initial_rows: int = 0
    ) -> None:
        self.total_rows = total_rows
        self.rows = initial_rows
        self.failed_rows = 0
        self.rollouts = 0
        self.started = time.perf_counter()
        self._bar: Any = None
        if enabled:
            self._bar = tqdm(
                total=total_rows,
                initial=initial_rows,
                desc=description,
                unit="row",
                dynamic_ncols=True,
                file=sys.stderr,
            )

    def update(self, report: BatchReport) -> None:
        """Add one batch's `BatchReport` (rows, failed_rows, rollouts)."""
        self.rows += report.rows
        self.failed_rows += report.failed_rows
        self.rollouts += report.rollouts
        if self._bar is not None:
            self._bar.set_postfix_str(
                f"{self.rollouts_per_second:.1f} rollouts/s, {self.failed_rows} failed", refresh=False
            )
            self._bar.update(report.rows)

    @property
    def rollouts_per_second(self) -> float:
        """Mean generation throughput since the start."""
        elapsed = time.perf_counter() - self.started
        return self.rollouts / elapsed if elapsed > 0 else 0.0

    def close(self) -> None:
        """End the line."""
        if self._bar is not None:
            self._bar.close()
