"""Filter and stratify scored datasets. Pure functions of (dataset, options), built on `Dataset.filter`,
so results are fingerprinted and cached like any datasets transform."""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
from datasets import Dataset, DatasetDict

from difficulty_curation.buckets import DIFFICULTY_COLUMN, PAPER_BUCKET_RANGES, Bucket, bucket_of, paper_buckets
from difficulty_curation.errors import ColumnNotFoundError, ConfigError
from difficulty_curation.splits import map_splits, one_split_only

logger = logging.getLogger(__name__)


def filter_difficulty(
    dataset: Dataset | DatasetDict,
    bucket_or_buckets: str | Sequence[str] | None = None,
    *,
    min: float | None = None,
    max: float | None = None,
) -> Dataset | DatasetDict:
    """Keep rows in the named paper buckets and/or within `[min, max]` difficulty.

    Unscored rows (`difficulty` is None) are always excluded and their count is logged.

    Example:
        >>> medium = filter_difficulty(scored, "medium")                 # SFT-M  # doctest: +SKIP
        >>> no_hard = filter_difficulty(scored, ["easy", "medium"])      # SFT-EM # doctest: +SKIP
        >>> mid = filter_difficulty(scored, min=0.25, max=0.75)          # doctest: +SKIP
    """
    buckets = paper_buckets(bucket_or_buckets)
    _check_range(min, max)
    if isinstance(dataset, DatasetDict):
        return map_splits(lambda part: filter_difficulty(part, bucket_or_buckets, min=min, max=max), dataset)
    _require_difficulty(dataset)
    _log_unscored(dataset)
    ranges = [(b.low, b.high, b.low_open, b.high_open) for b in buckets] if buckets else None
    return dataset.filter(
        _keep_batch,
        batched=True,
        input_columns=[DIFFICULTY_COLUMN],
        fn_kwargs={"ranges": ranges, "low": min, "high": max},
        desc="Filtering by difficulty",
    )


def stratify(
    dataset: Dataset,
    scheme: str = "paper",
    *,
    bins: Sequence[float] | None = None,
    quantiles: int | None = None,
) -> DatasetDict:
    """Split a scored dataset into disjoint buckets covering every scored row.

    - `scheme="paper"`: easy / medium / hard, as in DC-SFT.
    - `bins=[0, 0.25, 0.75, 1]`: custom edges; bins are `[a, b)` with the last one closed.
    - `quantiles=n`: `n` bins of about equal size from the data's quantiles (ties may merge bins).

    Example:
        >>> buckets = stratify(scored)                 # DatasetDict(easy=..., medium=..., hard=...)  # doctest: +SKIP
        >>> quartiles = stratify(scored, quantiles=4)  # doctest: +SKIP
    """
    one_split_only(dataset, "stratify takes one split; call it per split, e.g. stratify(scored['train']).")
    _require_difficulty(dataset)
    buckets = stratify_buckets(dataset, scheme=scheme, bins=bins, quantiles=quantiles)
    _log_unscored(dataset)
    return DatasetDict(
        {
            bucket.name: dataset.filter(
                _keep_batch,
                batched=True,
                input_columns=[DIFFICULTY_COLUMN],
                fn_kwargs={"ranges": [(bucket.low, bucket.high, bucket.low_open, bucket.high_open)]},
                desc=f"Bucket {bucket.name}",
            )
            for bucket in buckets
        }
    )


def stratify_buckets(
    dataset: Dataset | None = None,
    *,
    scheme: str = "paper",
    bins: Sequence[float] | None = None,
    quantiles: int | None = None,
) -> list[Bucket]:
    """The buckets `stratify` would use (quantile edges need the dataset)."""
    if bins is not None and quantiles is not None:
        raise ConfigError("pass either bins=[...] or quantiles=n, not both.")
    if bins is not None:
        return _bins_to_buckets([float(edge) for edge in bins])
    if quantiles is not None:
        if isinstance(quantiles, bool) or not isinstance(quantiles, int) or quantiles < 1:
            raise ConfigError(f"quantiles must be an integer >= 1, got {quantiles!r}.")
        if dataset is None:
            raise ConfigError("quantile buckets need the dataset.")
        values = _scored_values(dataset)
        if len(values) == 0:
            raise ConfigError("the dataset has no scored rows to compute quantiles from.")
        edges = np.unique(np.quantile(values, np.linspace(0, 1, quantiles + 1)))
        if len(edges) == 1:
            return [Bucket("q1", float(edges[0]), float(edges[0]))]
        return [
            Bucket(f"q{i + 1}", b.low, b.high, b.low_open, b.high_open)
            for i, b in enumerate(_bins_to_buckets(edges.tolist()))
        ]
    if scheme != "paper":
        raise ConfigError(f"scheme={scheme!r} is not known; use scheme='paper', bins=[...] or quantiles=n.")
    return list(PAPER_BUCKET_RANGES.values())


def _bins_to_buckets(edges: list[float]) -> list[Bucket]:
    if len(edges) < 2:
        raise ConfigError(f"bins needs at least two edges, got {edges!r}.")
    if any(not math.isfinite(e) or e < 0 or e > 1 for e in edges):
        raise ConfigError(f"bins edges must lie in [0, 1], got {edges!r}.")
    if any(b <= a for a, b in itertools.pairwise(edges)):
        raise ConfigError(f"bins edges must be strictly increasing, got {edges!r}.")
    last = len(edges) - 2
    return [
        Bucket(f"{low:g}-{high:g}", low, high, high_open=i != last)
        for i, (low, high) in enumerate(itertools.pairwise(edges))
    ]


def _keep_batch(
    difficulties: list[float | None],
    ranges: list[tuple[float, float, bool, bool]] | None,
    low: float | None = None,
    high: float | None = None,
) -> list[bool]:
    keep = []
    for value in difficulties:
        if value is None or math.isnan(value):
            keep.append(False)
            continue
        ok = low is None or value >= low
        ok = ok and (high is None or value <= high)
        if ok and ranges is not None:
            ok = any(Bucket("", *bounds).contains(value) for bounds in ranges)
        keep.append(ok)
    return keep


def _check_range(low: float | None, high: float | None) -> None:
    for name, value in (("min", low), ("max", high)):
        if value is not None and (not isinstance(value, (int, float)) or not 0 <= value <= 1):
            raise ConfigError(f"{name} must be a number in [0, 1], got {value!r}.")
    if low is not None and high is not None and low > high:
        raise ConfigError(f"min={low} is greater than max={high}; thresholds must be in order.")


def _require_difficulty(dataset: Dataset) -> None:
    if DIFFICULTY_COLUMN not in dataset.column_names:
        raise ColumnNotFoundError(
            "difficulty_column",
            DIFFICULTY_COLUMN,
            dataset.column_names,
            advice="The dataset is not scored: score it first with `curate score` (or `score_to_dir`).",
        )


def difficulty_array(dataset: Dataset) -> pa.Array:
    """The difficulty column as one Arrow array, honouring any `select`/`shuffle`/`filter` view.

    Raises:
        ConfigError: a value that is not a number in [0, 1] (NaN, infinite, negative, above 1), naming its row;
            a failed row's difficulty is null, never NaN.
    """
    import pyarrow.compute as pc

    _require_difficulty(dataset)
    column = dataset.with_format("arrow")[DIFFICULTY_COLUMN]
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    try:
        values = column.cast(pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise ConfigError(
            f"the difficulty column holds {column.type} values, not numbers; score the rows again with `curate score`."
        ) from None
    bad = pc.fill_null(
        pc.invert(pc.and_(pc.is_finite(values), pc.and_(pc.greater_equal(values, 0), pc.less_equal(values, 1)))), False
    )
    if pc.any(bad).as_py():
        index = pc.index(bad, True).as_py()
        raise ConfigError(
            f"row {index} has difficulty {values[index].as_py()!r}: difficulty must be a number in [0, 1] "
            "(or null for a row that failed to score). Fix the column, or score the rows again with `curate score`."
        )
    return column


def _scored_values(dataset: Dataset) -> np.ndarray:
    values = np.asarray(difficulty_array(dataset).to_numpy(zero_copy_only=False), dtype=np.float64)
    return values[~np.isnan(values)]


def _log_unscored(dataset: Dataset) -> int:
    unscored = difficulty_array(dataset).null_count
    if unscored:
        logger.warning("%d of %d rows have no difficulty (failed rows) and are excluded.", unscored, len(dataset))
    return unscored


def unscored_count(dataset: Dataset) -> int:
    """How many rows have no difficulty (rows that could not be scored)."""
    return difficulty_array(dataset).null_count


__all__ = [
    "PAPER_BUCKET_RANGES",
    "Bucket",
    "bucket_of",
    "difficulty_array",
    "filter_difficulty",
    "stratify",
    "stratify_buckets",
    "unscored_count",
]
