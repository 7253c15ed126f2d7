"""`compare_runs`: how rows move between buckets from the first run to the last, and the seed noise floor."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from difficulty_curation.buckets import PAPER_BUCKETS, bucket_of
from difficulty_curation.columns import Columns
from difficulty_curation.compare.runs import RunLike, ScoredRun, load_runs, majority_answers
from difficulty_curation.errors import ConfigError

#: The bucket of a row a run could not score.
FAILED = "failed"
#: Row states of the transition matrix, in order.
STATES: tuple[str, ...] = (*PAPER_BUCKETS, FAILED)
#: Share of seed-to-seed changes the noise floor covers: a change beyond it is bigger than 95% of pure noise.
NOISE_QUANTILE = 0.95


@dataclass
class NoiseFloor:
    """How much difficulty moves between two runs of one model that differ only in the seed."""

    names: list[str]
    matched: int
    #: the NOISE_QUANTILE quantile of |difficulty change| between the two seeds
    floor: float
    mean_abs_delta: float
    #: share of rows whose bucket differs between the two seeds
    bucket_changes: float
    #: rows of the compared runs whose |delta| exceeds the floor, and their share of the rows scored in both
    exceeding_rows: int = 0
    exceeding_share: float = 0.0


@dataclass
class RunComparison:
    """Scored runs of the same rows, side by side (the first run against the last)."""

    names: list[str]
    #: rows present in every run
    matched: int
    #: run name -> rows present only in that run (never silently dropped)
    only_in: dict[str, int]
    #: first run's bucket -> last run's bucket -> rows, over easy/medium/hard and "failed"
    transitions: dict[str, dict[str, int]]
    #: rows that moved most, biggest |delta| first
    moved: list[dict[str, Any]]
    #: the same matrix as shares of the matched rows
    transition_shares: dict[str, dict[str, float]] = field(default_factory=dict)
    #: run name -> rows present in some but not every run (besides only_in)
    missing_from: dict[str, int] = field(default_factory=dict)
    #: each run: name, model, seed, num_rollouts, rows, where it was read from
    runs: list[dict[str, Any]] = field(default_factory=list)
    #: every matched row: {"key", "index": [per run], "difficulty": [per run], "delta"} (last minus first)
    deltas: list[dict[str, Any]] = field(default_factory=list)
    #: Spearman rank correlation of the first and last run's difficulty over rows scored in both
    rank_correlation: float | None = None
    mean_delta: float | None = None
    mean_abs_delta: float | None = None
    #: matched rows whose bucket differs between the first and last run
    bucket_changes: int = 0
    noise: NoiseFloor | None = None

    def to_dict(self, *, rows: bool = True) -> dict[str, Any]:
        """JSON-safe form (`rows=False` leaves out the per-row deltas)."""
        data = asdict(self)
        if not rows:
            data.pop("deltas")
        return _json_safe(data)

    def summary(self) -> dict[str, Any]:
        """The short form stored in a merged dataset's provenance (and shown on its card)."""
        keep = ("names", "matched", "only_in", "transitions", "rank_correlation", "mean_abs_delta", "bucket_changes")
        return _json_safe({key: getattr(self, key) for key in keep})


def compare_runs(
    runs: Sequence[RunLike],
    *,
    names: Sequence[str] | None = None,
    top: int = 20,
    noise: Sequence[RunLike] | None = None,
    split: str | None = None,
) -> RunComparison:
    """Compare scored runs of the same rows (two or more): the first run against the last.

    Args:
        runs: scored datasets or their folders (`curate score` outputs), in order, e.g. before and after training.
        names: one label per run (default: the model's name, plus the seed or k where models repeat).
        top: how many of the rows that moved most to list.
        noise: two runs of one model that differ only in the seed; their difference is the noise floor,
            and the comparison says how many rows moved more than it.
        split: the split to compare, for runs that hold several.

    Returns:
        A `RunComparison` with the bucket transition matrix, per-row deltas and the rows that moved most.

    Raises:
        ConfigError: fewer than two runs, a run without provenance, runs of different splits or of
            different rows (none in common), names that do not fit the runs.

    Example:
        >>> comparison = compare_runs(["scored-before/", "scored-after/"])  # doctest: +SKIP
        >>> comparison.transitions["hard"]["medium"]  # hard rows the training made medium  # doctest: +SKIP
    """
    if len(runs) < 2:
        raise ConfigError(f"compare needs at least two scored runs, got {len(runs)}.")
    if top < 0:
        raise ConfigError(f"top must be >= 0, got {top!r}.")
    loaded = load_runs(runs, names=names, split=split)
    comparison = compare_loaded(loaded, top=top)
    if noise is not None:
        comparison.noise = _noise_floor(load_runs(noise, split=split, role="noise run"), comparison)
    return comparison


def compare_loaded(runs: list[ScoredRun], *, top: int) -> RunComparison:
    """`compare_runs` on runs already read by `load_runs`."""
    empty = [run.where for run in runs if not run.keys]
    if empty:
        raise ConfigError(
            f"{', '.join(empty)} {'holds' if len(empty) == 1 else 'hold'} no rows; pass scored runs with rows."
        )
    positions = [{key: index for index, key in enumerate(run.keys)} for run in runs]
    common = [key for key in runs[0].keys if all(key in p for p in positions)]
    if not common:
        raise ConfigError(
            f"the runs share no rows ({', '.join(run.where for run in runs)} hold different rows); "
            "compare runs that scored the same dataset."
        )
    owners = Counter(key for p in positions for key in p)
    only_in = {run.name: sum(1 for key in p if owners[key] == 1) for run, p in zip(runs, positions)}
    missing_from = {run.name: sum(1 for key in owners if key not in p) for run, p in zip(runs, positions)}
    values = [run.difficulties for run in runs]
    answers = [majority_answers(run.dataset) for run in runs]
    references = _references(runs[0])
    transitions = {a: dict.fromkeys(STATES, 0) for a in STATES}
    deltas = []
    for key in common:
        index = [p[key] for p in positions]
        difficulty = [rounded(v[i]) for v, i in zip(values, index)]
        transitions[_state(difficulty[0])][_state(difficulty[-1])] += 1
        delta = None if difficulty[0] is None or difficulty[-1] is None else rounded(difficulty[-1] - difficulty[0])
        deltas.append({"key": key, "index": index, "difficulty": difficulty, "delta": delta})
    scored = [row for row in deltas if row["delta"] is not None]
    moved = sorted((row for row in scored if row["delta"]), key=lambda row: -abs(row["delta"]))[:top]
    moved = [
        {
            **row,
            "reference": references[row["index"][0]],
            **(
                {"majority_answer": [a[i] if a is not None else None for a, i in zip(answers, row["index"])]}
                if any(a is not None for a in answers)
                else {}
            ),
        }
        for row in moved
    ]
    matched = len(common)
    return RunComparison(
        names=[run.name for run in runs],
        matched=matched,
        only_in=only_in,
        transitions=transitions,
        moved=moved,
        transition_shares={a: {b: round(n / matched, 4) for b, n in row.items()} for a, row in transitions.items()},
        missing_from=missing_from,
        runs=[
            {
                "name": run.name,
                "model": run.provenance.get("model"),
                "seed": run.provenance.get("seed"),
                "num_rollouts": run.provenance.get("num_rollouts"),
                "rows": len(run.keys),
                "where": run.where,
            }
            for run in runs
        ],
        deltas=deltas,
        rank_correlation=spearman([row["difficulty"][0] for row in scored], [row["difficulty"][-1] for row in scored]),
        mean_delta=rounded(float(np.mean([row["delta"] for row in scored]))) if scored else None,
        mean_abs_delta=rounded(float(np.mean([abs(row["delta"]) for row in scored]))) if scored else None,
        bucket_changes=sum(_state(r["difficulty"][0]) != _state(r["difficulty"][-1]) for r in deltas),
    )


def _noise_floor(noise_runs: list[ScoredRun], comparison: RunComparison) -> NoiseFloor:
    if len(noise_runs) != 2:
        raise ConfigError(f"the noise floor needs two runs of one model with different seeds, got {len(noise_runs)}.")
    first, second = (run.provenance for run in noise_runs)
    if first.get("model") != second.get("model") or first.get("seed") == second.get("seed"):
        raise ConfigError(
            "the noise runs must be one model scored with two different seeds; got "
            f"{first.get('model')} seed {first.get('seed')} and {second.get('model')} seed {second.get('seed')}."
        )
    noise = compare_loaded(noise_runs, top=0)
    changes = [abs(row["delta"]) for row in noise.deltas if row["delta"] is not None]
    floor = rounded(float(np.quantile(changes, NOISE_QUANTILE))) if changes else 0.0
    compared = [abs(row["delta"]) for row in comparison.deltas if row["delta"] is not None]
    exceeding = sum(1 for change in compared if change > floor)
    return NoiseFloor(
        names=noise.names,
        matched=noise.matched,
        floor=floor,
        mean_abs_delta=noise.mean_abs_delta or 0.0,
        bucket_changes=round(noise.bucket_changes / noise.matched, 4),
        exceeding_rows=exceeding,
        exceeding_share=round(exceeding / len(compared), 4) if compared else 0.0,
    )


def spearman(first: Sequence[float], second: Sequence[float]) -> float | None:
    """Spearman rank correlation (ties get their average rank); None for fewer than two rows or a constant side."""
    if len(first) < 2:
        return None
    a, b = _ranks(np.asarray(first, dtype=float)), _ranks(np.asarray(second, dtype=float))
    if a.std() == 0 or b.std() == 0:
        return None
    return rounded(float(np.corrcoef(a, b)[0, 1]))


def _ranks(values: np.ndarray) -> np.ndarray:
    order = values.argsort(kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values), dtype=float)
    for value in np.unique(values):
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def _references(run: ScoredRun) -> list[Any]:
    column = Columns.from_provenance(run.provenance).answer_column
    if column not in run.dataset.column_names:
        return [None] * len(run.dataset)
    return run.dataset.with_format("arrow")[column].to_pylist()


def _state(difficulty: float | None) -> str:
    return bucket_of(difficulty) or FAILED


def rounded(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else round(float(value), 6)


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


__all__ = [
    "FAILED",
    "NOISE_QUANTILE",
    "STATES",
    "NoiseFloor",
    "RunComparison",
    "compare_loaded",
    "compare_runs",
    "rounded",
    "spearman",
]
