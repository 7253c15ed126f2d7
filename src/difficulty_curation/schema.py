"""The columns scoring adds, in one table: their types, how a batch's rollouts and scores become them,
and the image-feature helpers scoring reads rows with."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from difficulty_curation.answers import FINISH_UNKNOWN, count_truncated, finish_reason
from difficulty_curation.config import ScoringConfig
from difficulty_curation.redact import redact

if TYPE_CHECKING:
    from datasets import Dataset, Features

#: Every column scoring can add: name -> (feature type, the config option that adds it; None = always).
SCORE_SCHEMA: dict[str, tuple[str, str | None]] = {
    "difficulty": ("float32", None),
    "num_correct": ("int32", None),
    "num_rollouts": ("int32", None),
    "num_truncated": ("int32", None),
    "difficulty_error": ("string", None),
    "rollouts": ("list[string]", "keep_rollouts"),
    "rollout_scores": ("list[float32]", "keep_rollouts"),
    "rollout_finish_reasons": ("list[string]", "keep_rollouts"),
    "pass_rate_low": ("float32", "pass_rate_interval"),
    "pass_rate_high": ("float32", "pass_rate_interval"),
}
#: Columns every scored dataset gets.
SCORE_COLUMNS = tuple(name for name, (_, option) in SCORE_SCHEMA.items() if option is None)
#: Every column a scoring run may add (what a rescore drops before scoring again).
ALL_SCORE_COLUMNS = tuple(SCORE_SCHEMA)


def score_column_names(config: ScoringConfig) -> list[str]:
    """The columns a scorer with `config` adds, in schema order."""
    return [name for name, (_, option) in SCORE_SCHEMA.items() if option is None or _enabled(config, option)]


def score_features(config: ScoringConfig, features: Features | None = None) -> Features:
    """`features` (default none) plus the typed columns a scorer with `config` adds."""
    from datasets import Features, List, Value

    output = Features(features or {})
    for name in score_column_names(config):
        kind = SCORE_SCHEMA[name][0]
        output[name] = List(Value(kind[5:-1])) if kind.startswith("list[") else Value(kind)
    return output


def score_table(columns: dict[str, list[Any]], config: ScoringConfig) -> Any:
    """A scorer's output columns as an Arrow table with their declared types."""
    import pyarrow as pa

    features = score_features(config)
    return pa.Table.from_pydict({name: columns[name] for name in features}, schema=features.arrow_schema)


def score_columns(
    config: ScoringConfig,
    rollouts: Sequence[list[str] | None],
    scores: Sequence[list[float | None] | None],
    errors: Sequence[str | None],
) -> dict[str, list[Any]]:
    """A batch's score columns from each row's rollouts, their scores (None: not judged) and its error.

    numpy scalars carry float32/int32 through datasets' type inference; None stays null. A row whose
    rollouts were all excluded failed, yet says how many it drew and how many were truncated.
    """
    threshold = config.correct_threshold
    judged = [
        None if s is None or error is not None else [v for v in s if v is not None] for s, error in zip(scores, errors)
    ]
    num_correct = [None if j is None else np.int32(sum(v >= threshold for v in j)) for j in judged]
    truncated = [None if r is None else count_truncated(r) for r in rollouts]
    columns: dict[str, list[Any]] = {
        "difficulty": [None if c is None else np.float32(1.0 - int(c) / len(j)) for c, j in zip(num_correct, judged)],
        "num_correct": num_correct,
        "num_rollouts": [None if r is None else np.int32(len(r)) for r in rollouts],
        "num_truncated": [None if t is None else np.int32(t) for t in truncated],
        "difficulty_error": [redact(error) if error else "" for error in errors],
    }
    if config.keep_rollouts:
        columns["rollouts"] = [None if r is None else [str(text) for text in r] for r in rollouts]
        columns["rollout_scores"] = [
            None if r is None or s is None else [None if v is None else np.float32(v) for v in s]
            for r, s in zip(rollouts, scores)
        ]
        columns["rollout_finish_reasons"] = [
            None if r is None else [finish_reason(text) or FINISH_UNKNOWN for text in r] for r in rollouts
        ]
    if config.pass_rate_interval is not None:
        bounds = [
            (None, None) if c is None else pass_rate_interval(int(c), len(j), config.pass_rate_interval)
            for c, j in zip(num_correct, judged)
        ]
        columns["pass_rate_low"] = [None if low is None else np.float32(low) for low, _ in bounds]
        columns["pass_rate_high"] = [None if high is None else np.float32(high) for _, high in bounds]
    return columns


def pass_rate_interval(num_correct: int, num_rollouts: int, mass: float = 0.95) -> tuple[float, float]:
    """Central credible interval of the pass rate under a Jeffreys prior: Beta(c + 1/2, n - c + 1/2).

    Following Brown, Cai and DasGupta (2001), the lower bound is 0 when no rollout is right and the
    upper bound 1 when all are.
    """
    from scipy.special import betaincinv

    a, b = num_correct + 0.5, num_rollouts - num_correct + 0.5
    tail = (1.0 - mass) / 2
    low = 0.0 if num_correct == 0 else float(betaincinv(a, b, tail))
    high = 1.0 if num_correct == num_rollouts else float(betaincinv(a, b, 1.0 - tail))
    return low, high


@dataclass(frozen=True)
class FinishCounts:
    """How a dataset's rollouts ended: truncated (hit max_new_tokens), and known or not known at all."""

    truncated: int = 0
    #: rollouts whose finish reason is known (`truncated` of them hit the limit)
    known: int = 0
    #: rollouts scored before finish reasons were recorded (rows with a null `num_truncated`)
    unknown: int = 0

    @property
    def truncated_share(self) -> float | None:
        """truncated / known, or None when no finish reason is known."""
        return self.truncated / self.known if self.known else None

    def __add__(self, other: FinishCounts) -> FinishCounts:
        return FinishCounts(self.truncated + other.truncated, self.known + other.known, self.unknown + other.unknown)


def finish_counts(dataset: Dataset) -> FinishCounts:
    """Count one split's rollouts by how they ended, from its `num_rollouts` and `num_truncated` columns."""
    if "num_rollouts" not in dataset.column_names:
        return FinishCounts()
    columns = ["num_rollouts"] + (["num_truncated"] if "num_truncated" in dataset.column_names else [])
    table = dataset.select_columns(columns).with_format("arrow")[:]
    drawn = table.column("num_rollouts").to_pylist()
    truncated = table.column("num_truncated").to_pylist() if "num_truncated" in columns else [None] * len(drawn)
    counts = FinishCounts()
    for n, t in zip(drawn, truncated):
        if n is not None:
            counts += FinishCounts(t, n, 0) if t is not None else FinishCounts(0, 0, n)
    return counts


def _enabled(config: ScoringConfig, option: str) -> bool:
    value = getattr(config, option)
    return value is not None and value is not False


def undecoded_images(dataset: Dataset, image_column: str | None) -> Dataset:
    """`dataset` with `image_column` read as raw bytes, so a corrupt image fails its row, not the run."""
    if image_column is None:
        return dataset
    return dataset.cast_column(image_column, _undecoded(dataset.features[image_column]))


def replace_image_features(feature: Any, replacement: Any) -> Any:
    """`feature` with every `Image` in it (nested in lists too) replaced by `replacement`."""
    from datasets import Image, List, Sequence

    if isinstance(feature, Image):
        return replacement
    if isinstance(feature, (List, Sequence)):
        return type(feature)(replace_image_features(feature.feature, replacement))
    return feature


def _undecoded(feature: Any) -> Any:
    """The same feature with image decoding switched off (nested in lists too)."""
    from datasets import Image

    return replace_image_features(feature, Image(decode=False))
