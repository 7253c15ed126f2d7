"""Adaptive sampling without rounds: which rollouts to submit next, and when a row is decided.

An engine that streams rollouts (vLLM: one request per rollout, each seeded on its own) keeps a
`RowDraws` for a batch: it submits what `submit_next` names, reports each finished rollout to
`finish`, and aborts what that returns. A row is decided at the shortest prefix of its rollouts
0..j-1, all finished and judged in index order, for which `is_decided` says yes; rollouts past
that point are aborted or never submitted, and those that finished anyway are dropped. A row's
result is therefore the same prefix of its full draw whatever the order rollouts finish in.
Pure bookkeeping: tested without an engine.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from difficulty_curation.errors import RowError

#: is_decided(position, completions 0..j-1 of the row at `position`) -> whether drawing more can stop.
IsDecided = Callable[[int, Sequence[Any]], bool]

#: Rollouts a row may have submitted beyond its finished prefix while adaptive (enough to keep an
#: engine busy, few enough that little is drawn past the decision point).
ADAPTIVE_WINDOW = 4


@dataclass
class _Row:
    next_index: int = 0  # the next rollout (relative to `first_rollout`) to submit
    finished: dict[int, Any] = field(default_factory=dict)
    in_flight: set[int] = field(default_factory=set)
    resubmit: list[int] = field(default_factory=list)
    prefix: int = 0  # rollouts 0..prefix-1 have all finished and were judged
    outcome: list[Any] | RowError | None = None


class RowDraws:
    """The draw state of a batch's rows: up to `num_rollouts` each, `window` at a time beyond the finished prefix.

    Rollout indices are absolute (`first_rollout` onwards), as engines seed them. Without
    `is_decided`, every row draws all `num_rollouts` (a plain, non-adaptive draw).
    """

    def __init__(
        self,
        positions: Iterable[int],
        num_rollouts: int,
        *,
        window: int | None = None,
        is_decided: IsDecided | None = None,
        first_rollout: int = 0,
    ) -> None:
        if num_rollouts < 1:
            raise ValueError(f"num_rollouts must be at least 1, got {num_rollouts}")
        self.num_rollouts = num_rollouts
        self.window = num_rollouts if window is None else max(1, window)
        self.is_decided = is_decided
        self.first_rollout = first_rollout
        self.rows = {position: _Row() for position in positions}

    @property
    def done(self) -> bool:
        """Whether every row has its outcome (rollouts or an error)."""
        return all(row.outcome is not None for row in self.rows.values())

    @property
    def in_flight(self) -> int:
        """Rollouts submitted and not yet finished, over all rows."""
        return sum(len(row.in_flight) for row in self.rows.values())

    def submit_next(self, warm: Container[int] | None = None) -> list[tuple[int, int]]:
        """(position, rollout index) of the rollouts to submit now; they count as in flight from here on.

        With `warm`, a row not in it gets only its first rollout: the engine prefills its prompt once,
        and its other rollouts, submitted once it is warm, find the prompt in the prefix cache.
        """
        chosen = []
        for position, row in self.rows.items():
            if row.outcome is not None:
                continue
            while row.resubmit:
                relative = row.resubmit.pop()
                row.in_flight.add(relative)
                chosen.append((position, self.first_rollout + relative))
            limit = min(self.num_rollouts, row.prefix + self.window)
            if warm is not None and position not in warm:
                limit = min(limit, 1)
            while row.next_index < limit:
                row.in_flight.add(row.next_index)
                chosen.append((position, self.first_rollout + row.next_index))
                row.next_index += 1
        return chosen

    def finish(self, position: int, index: int, completion: Any) -> list[tuple[int, int]]:
        """Record a finished rollout; returns the row's rollouts still in flight once it is decided (to abort)."""
        row, relative = self.rows[position], index - self.first_rollout
        if row.outcome is not None or relative not in row.in_flight:
            return []  # finished past the decision point, or after its row failed: not kept
        row.in_flight.discard(relative)
        row.finished[relative] = completion
        while row.prefix in row.finished:
            row.prefix += 1
            completions = [row.finished[i] for i in range(row.prefix)]
            if row.prefix == self.num_rollouts or (
                self.is_decided is not None and self.is_decided(position, completions)
            ):
                row.outcome = completions
                return self._close(position, row)
        return []

    def retry(self, position: int, index: int) -> None:
        """Submit this rollout again (the engine dropped it for a reason that is not the row's)."""
        row, relative = self.rows[position], index - self.first_rollout
        if row.outcome is None and relative in row.in_flight:
            row.in_flight.discard(relative)
            row.resubmit.append(relative)

    def fail(self, position: int, error: RowError) -> list[tuple[int, int]]:
        """Give the row an error instead of rollouts; returns its rollouts in flight (to abort)."""
        row = self.rows[position]
        if row.outcome is not None:
            return []
        row.outcome = error
        return self._close(position, row)

    def _close(self, position: int, row: _Row) -> list[tuple[int, int]]:
        aborted = [(position, self.first_rollout + relative) for relative in sorted(row.in_flight)]
        row.in_flight.clear()
        row.resubmit.clear()
        return aborted

    def outcomes(self) -> dict[int, list[Any] | RowError]:
        """Each finished row's rollouts (the decided prefix) or error."""
        return {position: row.outcome for position, row in self.rows.items() if row.outcome is not None}

    def completed(self) -> dict[int, list[Any]]:
        """The rows whose rollouts are all drawn (for a stopped run to keep)."""
        return {position: outcome for position, outcome in self.outcomes().items() if isinstance(outcome, list)}
