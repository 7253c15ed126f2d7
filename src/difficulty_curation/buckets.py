"""The paper's difficulty buckets, defined once: filter, stratify, stats, cards and push all read them here."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from difficulty_curation.errors import ConfigError

#: The column every bucket is a range of: the fraction of a row's rollouts judged wrong.
DIFFICULTY_COLUMN = "difficulty"


@dataclass(frozen=True)
class Bucket:
    """A named range of difficulty. Bounds are inclusive unless marked open."""

    name: str
    low: float
    high: float
    low_open: bool = False
    high_open: bool = False

    def contains(self, difficulty: float) -> bool:
        """Whether `difficulty` falls in this bucket."""
        above = difficulty > self.low if self.low_open else difficulty >= self.low
        below = difficulty < self.high if self.high_open else difficulty <= self.high
        return above and below

    def describe(self) -> str:
        """The range in interval notation, e.g. `(0, 1)`."""
        return f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


#: The paper's buckets: easy = every rollout right, hard = none right, medium = in between.
PAPER_BUCKET_RANGES: dict[str, Bucket] = {
    "easy": Bucket("easy", 0.0, 0.0),
    "medium": Bucket("medium", 0.0, 1.0, low_open=True, high_open=True),
    "hard": Bucket("hard", 1.0, 1.0),
}
#: Their names, in order of difficulty.
PAPER_BUCKETS: tuple[str, ...] = tuple(PAPER_BUCKET_RANGES)


def bucket_of(difficulty: float | None) -> str | None:
    """The paper's bucket name for one difficulty value (None for unscored rows)."""
    if difficulty is None or (isinstance(difficulty, float) and math.isnan(difficulty)):
        return None
    return next(name for name, bucket in PAPER_BUCKET_RANGES.items() if bucket.contains(difficulty))


def paper_buckets(names: str | Sequence[str] | None) -> list[Bucket]:
    """The paper's buckets named by `names` (one name or several, duplicates dropped), in that order.

    Raises:
        ConfigError: a name is not one of easy, medium, hard.
    """
    if names is None:
        return []
    chosen = [names] if isinstance(names, str) else list(dict.fromkeys(names))
    unknown = [name for name in chosen if name not in PAPER_BUCKET_RANGES]
    if unknown:
        raise ConfigError(f"unknown bucket(s) {unknown}; choose from: {', '.join(PAPER_BUCKETS)}.")
    return [PAPER_BUCKET_RANGES[name] for name in chosen]
