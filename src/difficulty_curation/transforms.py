"""Filter, stratify and mix scored datasets. Pure functions of (dataset, options), built on `Dataset.filter`,
so results are fingerprinted and cached like any datasets transform."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa
from datasets import Dataset, DatasetDict

from difficulty_curation.buckets import DIFFICULTY_COLUMN, PAPER_BUCKET_RANGES, Bucket, bucket_of, paper_buckets
from difficulty_curation.errors import ColumnNotFoundError, ConfigError
from difficulty_curation.redact import get_logger
from difficulty_curation.splits import map_splits, one_split_only

logger = get_logger(__name__)


def filter_difficulty(
    dataset: Dataset | DatasetDict,
    bucket_or_buckets: str | Sequence[str] | None = None,
    *,
    min: float | None = None,
    max: float | None = None,
    model: str | None = None,
    where: str | None = None,
) -> Dataset | DatasetDict:
    """Keep rows in the named paper buckets and/or within `[min, max]` difficulty.

    Unscored rows (`difficulty` is None) are always excluded and their count is logged. On a dataset
    from `merge_scores`, `model=NAME` judges rows by that model's difficulty (`"mean"`, the default,
    by the mean), and `where="all hard"` (`all`/`any`/`none` and a bucket) keeps rows by agreement.

    Example:
        >>> medium = filter_difficulty(scored, "medium")                 # SFT-M  # doctest: +SKIP
        >>> no_hard = filter_difficulty(scored, ["easy", "medium"])      # SFT-EM # doctest: +SKIP
        >>> mid = filter_difficulty(scored, min=0.25, max=0.75)          # doctest: +SKIP
    """
    buckets = paper_buckets(bucket_or_buckets)
    _check_range(min, max)
    if isinstance(dataset, DatasetDict):
        return map_splits(
            lambda part: filter_difficulty(part, bucket_or_buckets, min=min, max=max, model=model, where=where),
            dataset,
        )
    _require_difficulty(dataset)
    dataset = model_view(dataset, model)
    _log_unscored(dataset)
    ranges = [(b.low, b.high, b.low_open, b.high_open) for b in buckets] if buckets else None
    if where is not None:
        return _filter_view(dataset, ranges, min, max, where=where)
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
    model: str | None = None,
    where: str | None = None,
) -> DatasetDict:
    """Split a scored dataset into disjoint buckets covering every scored row.

    - `scheme="paper"`: easy / medium / hard, as in DC-SFT.
    - `bins=[0, 0.25, 0.75, 1]`: custom edges; bins are `[a, b)` with the last one closed.
    - `quantiles=n`: `n` bins of about equal size from the data's quantiles (ties may merge bins).
    - `model=NAME` / `where="all hard"`: on a dataset from `merge_scores`, as in `filter_difficulty`.

    Example:
        >>> buckets = stratify(scored)                 # DatasetDict(easy=..., medium=..., hard=...)  # doctest: +SKIP
        >>> quartiles = stratify(scored, quantiles=4)  # doctest: +SKIP
    """
    one_split_only(dataset, "stratify takes one split; call it per split, e.g. stratify(scored['train']).")
    _require_difficulty(dataset)
    dataset = model_view(dataset, model)
    if where is not None:
        view = _view_values(dataset, where)
        buckets = stratify_buckets(
            Dataset.from_dict({DIFFICULTY_COLUMN: view}), scheme=scheme, bins=bins, quantiles=quantiles
        )
        return DatasetDict(
            {
                b.name: dataset.select(
                    [i for i, keep in enumerate(_keep_batch(view, [(b.low, b.high, b.low_open, b.high_open)])) if keep]
                )
                for b in buckets
            }
        )
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


#: The column `merge_scores` writes: model name -> that model's difficulty, for every row.
MODEL_DIFFICULTY_COLUMN = "difficulty_by_model"
#: The view of a merged dataset that is the mean over its models (its `difficulty` column).
MEAN_VIEW = "mean"
#: How `where` quantifies over the models of a merged dataset.
WHERE_QUANTIFIERS = ("all", "any", "none")


def model_names(dataset: Dataset) -> list[str]:
    """The models of a dataset from `merge_scores` (empty for a dataset scored by one model)."""
    feature = dataset.features.get(MODEL_DIFFICULTY_COLUMN)
    return list(feature) if isinstance(feature, dict) else []


def parse_where(where: str) -> tuple[str, str]:
    """`"all hard"` -> `("all", "hard")`; a bad condition is a `ConfigError` that shows the form."""
    parts = where.split()
    if len(parts) != 2 or parts[0] not in WHERE_QUANTIFIERS or parts[1] not in PAPER_BUCKET_RANGES:
        raise ConfigError(
            f"where={where!r} is not a condition; write QUANTIFIER BUCKET with QUANTIFIER one of "
            f"{', '.join(WHERE_QUANTIFIERS)} and BUCKET one of {', '.join(PAPER_BUCKET_RANGES)}, e.g. 'all hard'."
        )
    return parts[0], parts[1]


def by_model_column(column: str) -> str:
    """The column of a merged dataset that holds `column` per run: `difficulty` -> `difficulty_by_model`."""
    return f"{column}_by_model"


def model_view(dataset: Dataset, model: str | None) -> Dataset:
    """A merged dataset (`merge_scores`) as run `model` scored it: its difficulty in `difficulty`, and its
    other score columns (`num_correct`, `num_rollouts`, `num_truncated`, `difficulty_error`, pass rates)
    in place, from their `<column>_by_model` columns. The provenance becomes that run's own record with
    `difficulty_model` naming it, so every later step (filter, card, export) buckets by that run.

    `model=None` or `"mean"` leaves a merged dataset as it is (the mean over the runs).

    Raises:
        ConfigError: `model` is not one of the dataset's runs, the dataset holds one model's scores, or
            it already holds one run's scores and `"mean"` is asked for.
    """
    from difficulty_curation.provenance import attach_provenance, model_view_provenance, read_provenance
    from difficulty_curation.schema import SCORE_SCHEMA

    if model is None:
        return dataset
    names = model_names(dataset)
    provenance = read_provenance(dataset) or {}
    current = provenance.get("difficulty_model")
    if model == MEAN_VIEW:
        if current is not None:
            raise ConfigError(
                f"the dataset's difficulty already holds {current!r}'s scores (selected with --model {current}), "
                "not the mean; select the mean from the merged dataset itself."
            )
        return dataset
    if not names:
        raise ConfigError(
            f"model={model!r} needs a dataset with several models' scores; merge runs with `curate merge-scores` first."
        )
    if model not in names:
        raise ConfigError(f"model {model!r} is not in the dataset; its models: {', '.join(names)} (or 'mean').")
    if current == model:
        return dataset
    from datasets import Value

    table = dataset.with_format("arrow")
    view = dataset
    for column, (kind, _) in SCORE_SCHEMA.items():
        source = by_model_column(column)
        if source in dataset.column_names:
            values = [row[model] for row in table[source].to_pylist()]
        elif column == "difficulty_error" and column in dataset.column_names:  # merged before errors were kept per run
            by_model = table[MODEL_DIFFICULTY_COLUMN].to_pylist()
            values = ["" if row[model] is not None else f"not scored by {model}" for row in by_model]
        elif column in ("num_correct", "num_truncated") and column in dataset.column_names:
            view = view.remove_columns(column)  # every run's rollouts together: not this run's
            continue
        else:
            continue
        position = view.column_names.index(column) if column in view.column_names else None
        if position is not None:
            view = view.remove_columns(column)
        view = view.add_column(column, values, feature=Value(kind))
        if position is not None:
            order = [*view.column_names[:position], column, *view.column_names[position:-1]]
            view = view.select_columns(order)
    if provenance:
        view = attach_provenance(view, model_view_provenance(provenance, model))
    return view


def _view_values(dataset: Dataset, where: str) -> list[float | None]:
    """Each row's difficulty, None where the merged runs do not meet `where` (e.g. "all hard")."""
    names = model_names(dataset)
    quantifier, bucket = parse_where(where)
    if not names:
        raise ConfigError(
            f"where={where!r} needs a dataset with several models' scores; merge runs with `curate merge-scores` first."
        )
    values = difficulty_array(dataset).to_pylist()
    by_model = dataset.with_format("arrow")[MODEL_DIFFICULTY_COLUMN].to_pylist()
    kept = []
    for value, row in zip(values, by_model):
        hits = [bucket_of(row[name]) == bucket for name in names]
        ok = all(hits) if quantifier == "all" else any(hits) if quantifier == "any" else not any(hits)
        kept.append(value if ok else None)
    return kept


def _filter_view(
    dataset: Dataset,
    ranges: list[tuple[float, float, bool, bool]] | None,
    low: float | None,
    high: float | None,
    *,
    where: str,
) -> Dataset:
    keep = _keep_batch(_view_values(dataset, where), ranges, low, high)
    return dataset.select([index for index, ok in enumerate(keep) if ok])


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


#: How `mix` orders the rows it draws.
MIX_ORDERS = ("curriculum", "shuffle")


def parse_ratio(ratio: str | Mapping[str, float]) -> dict[str, float]:
    """`"medium=0.8,easy=0.2"` (or a mapping) -> `{"easy": 0.2, "medium": 0.8}`, checked, buckets by name.

    The same recipe written in any order gives the same mapping (so the same draw and the same record).

    Raises:
        ConfigError: no bucket named, an unknown bucket or one named twice, a share outside (0, 1], or
            shares that do not add up to 1.
    """
    if isinstance(ratio, str):
        shares: dict[str, float] = {}
        for item in (part.strip() for part in ratio.split(",")):
            if not item:
                continue
            name, separator, value = item.partition("=")
            name = name.strip()
            try:
                share = float(value) if separator else float("nan")
            except ValueError:
                share = float("nan")
            if not separator or math.isnan(share):
                raise ConfigError(f"ratio item {item!r} is not BUCKET=SHARE; write e.g. medium=0.8,easy=0.2.")
            if name in shares:
                raise ConfigError(f"bucket {name!r} is given twice in the ratio {ratio!r}; name each bucket once.")
            shares[name] = share
    else:
        shares = {str(name): float(value) for name, value in dict(ratio).items()}
    if not shares:
        raise ConfigError(f"ratio {ratio!r} names no bucket; write e.g. medium=0.8,easy=0.2.")
    paper_buckets(list(shares))  # unknown names fail here, naming the choices
    bad = {name: value for name, value in shares.items() if not 0 < value <= 1}
    if bad:
        raise ConfigError(f"ratio shares must be in (0, 1], got {bad}; write e.g. medium=0.8,easy=0.2.")
    total = sum(shares.values())
    if abs(total - 1) > 1e-6:
        raise ConfigError(
            f"ratio shares add up to {total:g}, {'over' if total > 1 else 'under'} 1; make them add up to 1, "
            "e.g. medium=0.8,easy=0.2."
        )
    return dict(sorted(shares.items()))


def mix(
    dataset: Dataset,
    ratio: str | Mapping[str, float],
    *,
    num_rows: int,
    seed: int = 0,
    order: str = "curriculum",
    allow_short: bool = False,
    model: str | None = None,
) -> Dataset:
    """Draw a training set to a recipe: exact row counts per bucket, without replacement, in a set order.

    Counts are `num_rows` split by `ratio` (largest remainders, so they add up to `num_rows`). A bucket
    with too few rows is an error that lists each bucket's rows, unless `allow_short=True` (then it gives
    all it has). `order="curriculum"` sorts easy to hard by difficulty, ties broken by `seed`;
    `order="shuffle"` shuffles with `seed`. The recipe and the counts drawn go into the provenance, so
    the card, `push` and `export` carry them. `model` picks one model's view of a merged dataset
    (`model_view`: the drawn rows carry that model's difficulty).

    The draw depends on the recipe, the seed and the rows' content only: buckets are drawn in name
    order and each bucket's rows in the order of their content fingerprints (`fingerprints.content_keys`,
    over every column), so the same recipe written in another order, or the same rows stored in
    another order, draw the same rows.

    Example:
        >>> train = mix(scored, "medium=0.8,easy=0.2", num_rows=1000, seed=0)  # doctest: +SKIP
    """
    from difficulty_curation.fingerprints import content_keys
    from difficulty_curation.provenance import attach_provenance, read_provenance

    one_split_only(dataset, "mix takes one split; call it per split, e.g. mix(scored['train'], ...).")
    _require_difficulty(dataset)
    shares = parse_ratio(ratio)
    if order not in MIX_ORDERS:
        raise ConfigError(f"order={order!r} is not known; choose from: {', '.join(MIX_ORDERS)}.")
    if isinstance(num_rows, bool) or not isinstance(num_rows, int) or num_rows < 1:
        raise ConfigError(f"rows must be an integer >= 1, got {num_rows!r}.")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be an integer >= 0, got {seed!r}.")
    dataset = model_view(dataset, model)
    values = difficulty_array(dataset).to_pylist()
    pools = {name: [i for i, v in enumerate(values) if bucket_of(v) == name] for name in PAPER_BUCKET_RANGES}
    available = {name: len(rows) for name, rows in pools.items()}
    scored = sum(available.values())
    if not scored:
        raise ConfigError(
            f"the dataset has no scored rows to draw from ({len(values)} rows, every one failed to score); "
            "fix what failed (`curate stats` lists the reasons) and score again."
        )
    if num_rows > scored:
        raise ConfigError(
            f"rows={num_rows} is more than the {scored} scored rows in the dataset "
            f"({', '.join(f'{n} {c}' for n, c in available.items())}); ask for at most {scored}."
        )
    wanted = recipe_counts(shares, num_rows)
    short = {name: count for name, count in wanted.items() if count > available[name]}
    if short and not allow_short:
        raise ConfigError(
            "not enough rows for the recipe: "
            + ", ".join(f"{name} needs {count}, has {available[name]}" for name, count in short.items())
            + f" (rows per bucket: {', '.join(f'{n} {c}' for n, c in available.items())}); "
            "ask for fewer --rows, change --ratio, or pass --allow-short to take what there is."
        )
    keys = content_keys(dataset)
    rng = np.random.default_rng(seed)
    drawn = {}
    for name in sorted(wanted):
        pool = sorted(pools[name], key=lambda index: keys[index])
        size = min(wanted[name], available[name])
        drawn[name] = [pool[i] for i in rng.choice(len(pool), size=size, replace=False)] if size else []
    for name, count in short.items():
        logger.warning(
            "bucket %s has %d rows, fewer than the %d the recipe asks for; all are used.", name, available[name], count
        )
    chosen = [index for rows in drawn.values() for index in rows]
    tiebreak = rng.permutation(len(chosen))
    if order == "curriculum":
        chosen = [chosen[i] for i in sorted(range(len(chosen)), key=lambda i: (values[chosen[i]], tiebreak[i]))]
    else:
        chosen = [chosen[i] for i in tiebreak]
    result = dataset.select(chosen)
    recipe = {
        "ratio": shares,
        "rows": num_rows,
        "seed": seed,
        "order": order,
        "allow_short": allow_short,
        "model": model,
        "counts": {name: len(rows) for name, rows in drawn.items()},
        "available": available,
    }
    provenance = read_provenance(dataset)
    if provenance is not None:
        attach_provenance(result, {**provenance, "mix": recipe})
    return result


def recipe_counts(shares: Mapping[str, float], num_rows: int) -> dict[str, int]:
    """`num_rows` split by `shares` into whole rows that add up to exactly `num_rows` (largest remainders
    first, ties by bucket name). Shares within the ratio's tolerance of 1 are scaled to add up to 1 first."""
    total = sum(shares.values())
    raw = {name: share / total * num_rows for name, share in sorted(shares.items())}
    counts = {name: min(num_rows, math.floor(value + 1e-9)) for name, value in raw.items()}
    by_remainder = sorted(raw, key=lambda name: (-(raw[name] - counts[name]), name))
    while sum(counts.values()) > num_rows:
        name = next(n for n in reversed(by_remainder) if counts[n] > 0)
        counts[name] -= 1
    for name in by_remainder[: num_rows - sum(counts.values())]:
        counts[name] += 1
    return counts


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
    "by_model_column",
    "difficulty_array",
    "filter_difficulty",
    "mix",
    "model_names",
    "model_view",
    "parse_ratio",
    "parse_where",
    "recipe_counts",
    "stratify",
    "stratify_buckets",
    "unscored_count",
]
