"""The columns scoring adds, in one table, and the image-feature helpers scoring reads rows with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from difficulty_curation.config import ScoringConfig

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
#: Extra columns with `keep_rollouts=True`.
ROLLOUT_COLUMNS = tuple(name for name, (_, option) in SCORE_SCHEMA.items() if option == "keep_rollouts")
#: Extra columns with `pass_rate_interval` set.
INTERVAL_COLUMNS = tuple(name for name, (_, option) in SCORE_SCHEMA.items() if option == "pass_rate_interval")
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
