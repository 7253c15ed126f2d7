"""Scored runs side by side: the same rows scored by several models, checkpoints, seeds or k.

Rows are matched by a fingerprint of their content (prompt, images, reference answer), never by
position; rows present in only some runs are counted, not dropped. `compare_runs` reports how rows
move between buckets, and `merge_scores` keeps every run's difficulty in one dataset.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset, DatasetDict

from difficulty_curation.answers import extractor_for
from difficulty_curation.buckets import PAPER_BUCKETS, bucket_of
from difficulty_curation.config import ScoringConfig
from difficulty_curation.errors import ConfigError
from difficulty_curation.provenance import read_provenance
from difficulty_curation.redact import get_logger
from difficulty_curation.schema import undecoded_images
from difficulty_curation.verifiers import normalize_label

#: The bucket of a row a run could not score.
FAILED = "failed"
#: Row states of the transition matrix, in order.
STATES: tuple[str, ...] = (*PAPER_BUCKETS, FAILED)
#: Share of seed-to-seed changes the noise floor covers: a change beyond it is bigger than 95% of pure noise.
NOISE_QUANTILE = 0.95

RunLike = Dataset | DatasetDict | str | os.PathLike
#: The column `merge_scores` writes where rollouts were kept: model name -> that model's majority answer.
MAJORITY_COLUMN = "majority_answer_by_model"
logger = get_logger(__name__)


@dataclass
class ScoredRun:
    """One scored run as the comparison reads it: its rows, provenance, name and row fingerprints."""

    name: str
    dataset: Dataset
    provenance: dict[str, Any]
    keys: list[str]
    where: str

    @property
    def difficulties(self) -> list[float | None]:
        """The run's difficulty per row (None for failed rows)."""
        return self.dataset.with_format("arrow")["difficulty"].to_pylist()


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
    comparison = _compare(loaded, top=top)
    if noise is not None:
        comparison.noise = _noise_floor(load_runs(noise, split=split, role="noise run"), comparison)
    return comparison


def load_runs(
    runs: Sequence[RunLike], *, names: Sequence[str] | None = None, split: str | None = None, role: str = "run"
) -> list[ScoredRun]:
    """Read scored runs with their provenance and row fingerprints; checks they can be compared."""
    if names is not None and len(names) != len(runs):
        raise ConfigError(f"got {len(names)} names for {len(runs)} runs; pass one name per run.")
    if names is not None and len(set(names)) != len(names):
        raise ConfigError(f"names must differ from each other, got {list(names)}.")
    found = [_one_split(run, split, f"{role} {number}") for number, run in enumerate(runs, 1)]
    split_names = {name for _, _, name in found if name is not None}
    parts = [(part, where) for part, where, _ in found]
    if len(split_names) > 1:
        raise ConfigError(
            f"the {role}s are of different splits ({', '.join(sorted(split_names))}); compare runs of one split."
        )
    records = []
    for part, where in parts:
        provenance = read_provenance(part)
        if provenance is None:
            raise ConfigError(
                f"{where} has no scoring provenance (it was not scored by difficulty-curation, or it lost "
                "its info); pass the folders `curate score` wrote."
            )
        if "difficulty" not in part.column_names:
            raise ConfigError(f"{where} has no difficulty column; pass a scored dataset.")
        records.append(provenance)
    labels = list(names) if names is not None else run_names(records)
    return [
        ScoredRun(label, part, record, row_keys(part, record), where)
        for label, (part, where), record in zip(labels, parts, records)
    ]


def run_names(provenances: Sequence[dict[str, Any]]) -> list[str]:
    """One label per run: the model's last path part, plus the seed or k (then a number) where labels repeat."""
    labels = [Path(str(record.get("model") or "run").rstrip("/")).name or "run" for record in provenances]
    for extra in ("seed", "num_rollouts"):
        repeated = {label for label, n in Counter(labels).items() if n > 1}
        short = {"seed": "seed", "num_rollouts": "k"}[extra]
        labels = [
            f"{label} {short}={record.get(extra)}" if label in repeated else label
            for label, record in zip(labels, provenances)
        ]
    counts = Counter(labels)
    seen: Counter[str] = Counter()
    unique = []
    for label in labels:
        seen[label] += 1
        unique.append(f"{label} #{seen[label]}" if counts[label] > 1 else label)
    return unique


def row_keys(dataset: Dataset, provenance: dict[str, Any]) -> list[str]:
    """A fingerprint of each row's content: its prompt, images and reference answer (columns from the provenance).

    A row that occurs several times gets `#2`, `#3`... after its fingerprint, so duplicates pair in order.
    """
    prompt = provenance.get("prompt_column") or ScoringConfig.prompt_column
    answer = provenance.get("answer_column") or ScoringConfig.answer_column
    image = provenance.get("image_column")
    columns = [name for name in (prompt, image, answer) if name and name in dataset.column_names]
    if not columns:
        raise ConfigError(
            f"none of the columns the run's provenance names ({prompt}, {answer}) is in the dataset; "
            f"its columns: {', '.join(dataset.column_names)}. Pass the folders `curate score` wrote."
        )
    view = dataset.select_columns(columns)
    if image in columns:
        view = undecoded_images(view, image)
    seen: Counter[str] = Counter()
    keys = []
    rows = (dict(zip(batch, values)) for batch in view.iter(batch_size=1000) for values in zip(*batch.values()))
    for row in rows:
        digest = hashlib.sha256()
        for name in columns:
            digest.update(name.encode() + b"\0")
            value = row[name]
            if name == image:
                for cell in value if isinstance(value, list) else [value]:
                    if isinstance(cell, dict):
                        digest.update(cell.get("bytes") or str(cell.get("path")).encode())
                    else:
                        digest.update(str(cell).encode())
            else:
                digest.update(json.dumps(value, sort_keys=True, default=str).encode())
            digest.update(b"\1")
        key = digest.hexdigest()[:16]
        seen[key] += 1
        keys.append(key if seen[key] == 1 else f"{key}#{seen[key]}")
    return keys


def majority_answers(dataset: Dataset) -> list[str | None] | None:
    """Each row's most common normalised answer among its kept rollouts (None without `rollouts`).

    The answer is what the run's verifier judged: taken by the run's own answer extractor (its provenance).
    """
    if "rollouts" not in dataset.column_names:
        return None
    provenance = read_provenance(dataset) or {}
    extract = extractor_for(provenance.get("answer_extractor") or "auto", provenance.get("answer_pattern"))
    answers: list[str | None] = []
    for rollouts in dataset.with_format("arrow")["rollouts"].to_pylist():
        normalised = [normalize_label(extract(r) or "") for r in rollouts or []]
        answers.append(Counter(normalised).most_common(1)[0][0] if normalised else None)
    return answers


def merge_scores(runs: Sequence[RunLike], *, names: Sequence[str] | None = None, split: str | None = None) -> Dataset:
    """Every run's difficulty of the same rows in one dataset, under each model's name.

    Rows are matched by content; a row missing from some runs keeps None for those models (and is
    logged), so nothing is dropped. Adds `difficulty_by_model` ({model: difficulty}), the mean over the
    models in `difficulty`, `num_rollouts`, `difficulty_error` (empty where any model scored the row) and,
    where rollouts were kept, `majority_answer_by_model`. The provenance keeps each run's provenance under
    its name (`merged_runs`) and the comparison of the first run with the last (`comparison`).

    Raises:
        ConfigError: fewer than two runs, runs with different k, of different splits or rows, or without provenance.

    Example:
        >>> merged = merge_scores(["scored-7b/", "scored-72b/"], names=["7b", "72b"])  # doctest: +SKIP
        >>> filter_difficulty(merged, where="all hard")  # doctest: +SKIP
    """
    from datasets import Value, concatenate_datasets

    from difficulty_curation.provenance import attach_provenance
    from difficulty_curation.schema import ALL_SCORE_COLUMNS
    from difficulty_curation.transforms import MODEL_DIFFICULTY_COLUMN

    if len(runs) < 2:
        raise ConfigError(f"merge-scores needs at least two scored runs, got {len(runs)}.")
    loaded = load_runs(runs, names=names, split=split)
    ks = {run.name: run.provenance.get("num_rollouts") for run in loaded}
    if len(set(ks.values())) > 1:
        raise ConfigError(
            f"the runs have mixed k ({', '.join(f'{name}: {k}' for name, k in ks.items())}); merge runs scored with "
            "the same --num-rollouts (compare them with `curate compare` instead)."
        )
    comparison = _compare(loaded, top=0)
    owner: dict[str, tuple[int, int]] = {}
    for number, run in enumerate(loaded):
        for index, key in enumerate(run.keys):
            owner.setdefault(key, (number, index))
    keys = list(owner)
    parts = []
    for number, run in enumerate(loaded):
        rows = [index for key, (owner_run, index) in owner.items() if owner_run == number]
        if rows:
            kept = [
                c
                for c in run.dataset.column_names
                if c not in (*ALL_SCORE_COLUMNS, MODEL_DIFFICULTY_COLUMN, MAJORITY_COLUMN)
            ]
            parts.append(run.dataset.select_columns(kept).select(rows))
    try:
        base = concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    except ValueError as error:
        raise ConfigError(f"the runs' rows have different columns ({error}); merge runs of one dataset.") from None
    positions = [{key: index for index, key in enumerate(run.keys)} for run in loaded]
    values = [run.difficulties for run in loaded]
    errors = [
        run.dataset.with_format("arrow")["difficulty_error"].to_pylist()
        if "difficulty_error" in run.dataset.column_names
        else None
        for run in loaded
    ]
    answers = [majority_answers(run.dataset) for run in loaded]
    by_model, means, failures, majority = [], [], [], []
    for key in keys:
        row = {run.name: _round(v[p[key]]) if key in p else None for run, v, p in zip(loaded, values, positions)}
        scored = [value for value in row.values() if value is not None]
        by_model.append(row)
        means.append(_round(float(np.mean(scored))) if scored else None)
        reasons = [
            f"{run.name}: "
            + ((e[p[key]] if e is not None else "") or "not scored" if key in p else "row not in this run")
            for run, e, p in zip(loaded, errors, positions)
        ]
        failures.append("" if scored else "; ".join(reasons))
        majority.append(
            {
                run.name: a[p[key]] if a is not None and key in p else None
                for run, a, p in zip(loaded, answers, positions)
            }
        )
    missing = sum(1 for key in keys if not all(key in p for p in positions))
    if missing:
        logger.warning("%d rows are missing from some runs; those runs' difficulty is None for them.", missing)
    model_feature = {run.name: Value("float32") for run in loaded}
    merged = base.add_column(MODEL_DIFFICULTY_COLUMN, by_model, feature=model_feature)
    merged = merged.add_column("difficulty", means, feature=Value("float32"))
    merged = merged.add_column("num_rollouts", [ks[loaded[0].name]] * len(keys), feature=Value("int32"))
    merged = merged.add_column("difficulty_error", failures, feature=Value("string"))
    if any(a is not None for a in answers):
        merged = merged.add_column(MAJORITY_COLUMN, majority, feature={run.name: Value("string") for run in loaded})
    first = loaded[0].provenance
    record = {
        **first,
        "model": "mean of " + ", ".join(run.name for run in loaded),
        "merged_runs": {run.name: run.provenance for run in loaded},
        "comparison": comparison.summary(),
    }
    record.pop("mix", None)
    return attach_provenance(merged, record)


def plot_comparison(comparison: RunComparison, path: str | Path) -> Path:
    """Save the transition matrix and a first-vs-last scatter of per-row difficulty as one PNG (needs matplotlib).

    Raises:
        MissingDependencyError: matplotlib is not installed.
    """
    from difficulty_curation.errors import require
    from difficulty_curation.stats import save_figure

    require("matplotlib", "plot", "the comparison plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first, last = comparison.names[0], comparison.names[-1]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2), dpi=100)
    matrix = np.array([[comparison.transitions[a][b] for b in STATES] for a in STATES])
    left.imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        left.text(j, i, str(count), ha="center", va="center", color="white" if count > matrix.max() / 2 else "black")
    left.set_xticks(range(len(STATES)), STATES)
    left.set_yticks(range(len(STATES)), STATES)
    left.set_xlabel(last)
    left.set_ylabel(first)
    left.set_title(f"bucket transitions ({comparison.matched} rows)")
    pairs = [
        (row["difficulty"][0], row["difficulty"][-1])
        for row in comparison.deltas
        if row["difficulty"][0] is not None and row["difficulty"][-1] is not None
    ]
    if pairs:
        rng = np.random.default_rng(0)
        xs, ys = (np.array(values) + rng.uniform(-0.015, 0.015, len(pairs)) for values in zip(*pairs))
        right.scatter(xs, ys, s=10, alpha=0.6)
    right.plot([0, 1], [0, 1], color="grey", linewidth=1)
    right.set_xlim(-0.05, 1.05)
    right.set_ylim(-0.05, 1.05)
    right.set_xlabel(f"difficulty, {first}")
    right.set_ylabel(f"difficulty, {last}")
    rho = comparison.rank_correlation
    right.set_title("per row" + (f" (Spearman {rho:.2f})" if rho is not None else ""))
    return save_figure(figure, path)


def _one_split(run: RunLike, split: str | None, label: str) -> tuple[Dataset, str, str | None]:
    """The run's one split, how messages name the run (its path, else its place in the list), the split's name."""
    from difficulty_curation.sources import load_source

    where = f"{label} ({str(run)!r})" if isinstance(run, (str, os.PathLike)) else label
    dataset = load_source(run, split=split) if isinstance(run, (str, os.PathLike)) else run
    if isinstance(dataset, DatasetDict):
        if split is not None:
            if split not in dataset:
                raise ConfigError(f"split {split!r} is not in {where}; available splits: {', '.join(dataset)}.")
            return dataset[split], where, split
        if len(dataset) != 1:
            raise ConfigError(f"{where} holds several splits ({', '.join(dataset)}); pick one with --split.")
        name = next(iter(dataset))
        return dataset[name], where, name
    return dataset, where, str(dataset.split) if dataset.split is not None else None


def _compare(runs: list[ScoredRun], *, top: int) -> RunComparison:
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
        difficulty = [_round(v[i]) for v, i in zip(values, index)]
        transitions[_state(difficulty[0])][_state(difficulty[-1])] += 1
        delta = None if difficulty[0] is None or difficulty[-1] is None else _round(difficulty[-1] - difficulty[0])
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
        mean_delta=_round(float(np.mean([row["delta"] for row in scored]))) if scored else None,
        mean_abs_delta=_round(float(np.mean([abs(row["delta"]) for row in scored]))) if scored else None,
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
    noise = _compare(noise_runs, top=0)
    changes = [abs(row["delta"]) for row in noise.deltas if row["delta"] is not None]
    floor = _round(float(np.quantile(changes, NOISE_QUANTILE))) if changes else 0.0
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
    return _round(float(np.corrcoef(a, b)[0, 1]))


def _ranks(values: np.ndarray) -> np.ndarray:
    order = values.argsort(kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values), dtype=float)
    for value in np.unique(values):
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def _references(run: ScoredRun) -> list[Any]:
    column = run.provenance.get("answer_column") or ScoringConfig.answer_column
    if column not in run.dataset.column_names:
        return [None] * len(run.dataset)
    return run.dataset.with_format("arrow")[column].to_pylist()


def _state(difficulty: float | None) -> str:
    return bucket_of(difficulty) or FAILED


def _round(value: float | None) -> float | None:
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
    "MAJORITY_COLUMN",
    "NOISE_QUANTILE",
    "STATES",
    "NoiseFloor",
    "RunComparison",
    "ScoredRun",
    "compare_runs",
    "load_runs",
    "majority_answers",
    "merge_scores",
    "plot_comparison",
    "row_keys",
    "run_names",
    "spearman",
]
