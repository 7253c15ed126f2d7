"""Adaptive sampling in windows: which rollouts of a row to request next, and when a row is decided.

An engine that draws a row's rollouts `j0..j0+m-1` as one request (vLLM: `n=m`, seeded `row_seed + j0`,
see `engines.sampling`) keeps a `RowDraws` for a batch: it submits the windows `submit_next` names and
reports each finished window to `finish`. A row starts with a window of `first_window` rollouts and
gets its next window only while it is undecided; it is decided at the shortest prefix of its rollouts
0..j-1, judged in index order, for which `is_decided` says yes, and the rest of that window is
dropped. A row's result is therefore the same prefix of its full draw whatever the timing.
Without `is_decided` a row is one window of all its rollouts (a full draw: one request per row).
Pure bookkeeping: tested without an engine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from difficulty_curation.errors import RowError

#: is_decided(position, completions 0..j-1 of the row at `position`) -> whether drawing more can stop.
IsDecided = Callable[[int, Sequence[Any]], bool]

#: An adaptive row's first window, and each later one. A row needs a right and a wrong rollout to be
#: decided, so a window under 2 never stops a row; 4 lets a medium row stop at half of k=8.
ADAPTIVE_FIRST_WINDOW = 4
ADAPTIVE_WINDOW = 4

#: (position, first rollout index, number of rollouts): one request's worth of a row's rollouts.
Window = tuple[int, int, int]


@dataclass
class _Row:
    next_index: int = 0  # the next rollout (relative to `first_rollout`) to submit
    in_flight: tuple[int, int] | None = None  # (relative start, count) of the window being drawn
    resubmit: bool = False
    drawn: list[Any] = field(default_factory=list)  # rollouts 0..len-1, judged in index order
    outcome: list[Any] | RowError | None = None


class RowDraws:
    """The draw state of a batch's rows: up to `num_rollouts` each, one window of rollouts at a time.

    Rollout indices are absolute (`first_rollout` onwards), as engines seed them. Without
    `is_decided`, every row is one window of all `num_rollouts` (a plain, non-adaptive draw).
    """

    def __init__(
        self,
        positions: Iterable[int],
        num_rollouts: int,
        *,
        is_decided: IsDecided | None = None,
        first_window: int = ADAPTIVE_FIRST_WINDOW,
        window: int = ADAPTIVE_WINDOW,
        first_rollout: int = 0,
    ) -> None:
        if num_rollouts < 1:
            raise ValueError(f"num_rollouts must be at least 1, got {num_rollouts}")
        self.num_rollouts = num_rollouts
        self.is_decided = is_decided
        self.first_window = num_rollouts if is_decided is None else max(1, first_window)
        self.window = max(1, window)
        self.first_rollout = first_rollout
        self.rows = {position: _Row() for position in positions}

    @property
    def done(self) -> bool:
        """Whether every row has its outcome (rollouts or an error)."""
        return all(row.outcome is not None for row in self.rows.values())

    @property
    def in_flight(self) -> int:
        """Windows submitted and not yet finished, over all rows."""
        return sum(row.in_flight is not None for row in self.rows.values())

    def submit_next(self) -> list[Window]:
        """The windows to submit now, one per open row that has none in flight; in flight from here on."""
        chosen = []
        for position, row in self.rows.items():
            if row.outcome is not None:
                continue
            if row.resubmit and row.in_flight is not None:
                row.resubmit = False
                chosen.append((position, self.first_rollout + row.in_flight[0], row.in_flight[1]))
                continue
            if row.in_flight is not None:
                continue
            size = self.first_window if row.next_index == 0 else self.window
            count = min(size, self.num_rollouts - row.next_index)
            row.in_flight = (row.next_index, count)
            chosen.append((position, self.first_rollout + row.next_index, count))
            row.next_index += count
        return chosen

    def finish(self, position: int, start: int, completions: Sequence[Any]) -> None:
        """Record a finished window (rollouts `start`, `start + 1`, ...) and judge its prefixes in index order."""
        row = self.rows[position]
        if row.outcome is not None or row.in_flight != (start - self.first_rollout, len(completions)):
            return  # finished after its row failed, or not the window in flight: not kept
        row.in_flight = None
        for completion in completions:
            row.drawn.append(completion)
            if len(row.drawn) == self.num_rollouts or (
                self.is_decided is not None and self.is_decided(position, list(row.drawn))
            ):
                row.outcome = list(row.drawn)  # the rest of the window is past the decision: dropped
                return

    def retry(self, position: int, start: int) -> None:
        """Submit the window at `start` again (the engine dropped it for a reason that is not the row's)."""
        row = self.rows[position]
        if row.outcome is None and row.in_flight is not None and row.in_flight[0] == start - self.first_rollout:
            row.resubmit = True

    def fail(self, position: int, error: RowError) -> None:
        """Give the row an error instead of rollouts."""
        row = self.rows[position]
        if row.outcome is None:
            row.outcome = error
            row.in_flight = None

    def outcomes(self) -> dict[int, list[Any] | RowError]:
        """Each finished row's rollouts (the decided prefix) or error."""
        return {position: row.outcome for position, row in self.rows.items() if row.outcome is not None}

    def completed(self) -> dict[int, list[Any]]:
        """The rows whose rollouts are all drawn (for a stopped run to keep)."""
        return {position: outcome for position, outcome in self.outcomes().items() if isinstance(outcome, list)}
