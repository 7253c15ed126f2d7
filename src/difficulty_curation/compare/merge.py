"""`merge_scores`: every run's difficulty of the same rows in one dataset, under each model's name."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from datasets import Dataset

from difficulty_curation.compare.comparison import compare_loaded, rounded
from difficulty_curation.compare.runs import RunLike, load_runs, majority_answers
from difficulty_curation.errors import ConfigError
from difficulty_curation.redact import get_logger
from difficulty_curation.schema import SCORE_SCHEMA

#: The column `merge_scores` writes where rollouts were kept: model name -> that model's majority answer.
MAJORITY_COLUMN = "majority_answer_by_model"
logger = get_logger(__name__)


#: Names no run may take in a merged dataset: `--model mean` selects the mean over the runs.
RESERVED_RUN_NAMES = ("mean",)


def merge_scores(runs: Sequence[RunLike], *, names: Sequence[str] | None = None, split: str | None = None) -> Dataset:
    """Every run's difficulty of the same rows in one dataset, under each model's name.

    Rows are matched by content; a row missing from some runs keeps None for those models (and is
    logged), so nothing is dropped. Every per-row score column a run has is kept per run as
    `<column>_by_model` ({model: value}): `difficulty_by_model`, `num_correct_by_model`,
    `num_rollouts_by_model`, `num_truncated_by_model`, `difficulty_error_by_model` (None where the run
    lacks the row, so a missing row is never taken for a failed one), `pass_rate_low_by_model`...
    `difficulty` is the mean over the models that scored the row; `num_correct`, `num_rollouts` and
    `num_truncated` add up every run's rollouts of the row; `difficulty_error` is empty where any model
    scored it. Where rollouts were kept, `majority_answer_by_model`. The provenance keeps what all runs
    share, each run's own record under its name (`merged_runs`), the keys that differ between runs
    (`differs_by_run`) and the comparison of the first run with the last (`comparison`).
    `filter`/`stratify`/`mix` with `model=NAME` put that run's columns back in place.

    Raises:
        ConfigError: fewer than two runs, runs with different k, of different splits or rows, or without
            provenance; a run named `mean` (reserved for the mean) or with an empty name.

    Example:
        >>> merged = merge_scores(["scored-7b/", "scored-72b/"], names=["7b", "72b"])  # doctest: +SKIP
        >>> filter_difficulty(merged, where="all hard")  # doctest: +SKIP
    """
    from datasets import Value, concatenate_datasets

    from difficulty_curation.provenance import attach_provenance, merged_provenance, with_finish_counts
    from difficulty_curation.schema import ALL_SCORE_COLUMNS
    from difficulty_curation.transforms import by_model_column

    if len(runs) < 2:
        raise ConfigError(f"merge-scores needs at least two scored runs, got {len(runs)}.")
    loaded = load_runs(runs, names=names, split=split)
    for run in loaded:
        if run.name.strip().lower() in RESERVED_RUN_NAMES:
            raise ConfigError(
                f"{run.where} would be named {run.name!r}, which is reserved: `--model mean` selects the mean over "
                "the runs. Name it otherwise with --name (names=[...])."
            )
    ks = {run.name: run.provenance.get("num_rollouts") for run in loaded}
    if len(set(ks.values())) > 1:
        raise ConfigError(
            f"the runs have mixed k ({', '.join(f'{name}: {k}' for name, k in ks.items())}); merge runs scored with "
            "the same --num-rollouts (compare them with `curate compare` instead)."
        )
    comparison = compare_loaded(loaded, top=0)
    owner: dict[str, tuple[int, int]] = {}
    for number, run in enumerate(loaded):
        for index, key in enumerate(run.keys):
            owner.setdefault(key, (number, index))
    keys = list(owner)
    always = ("difficulty", "difficulty_error")
    per_run = [c for c in PER_RUN_COLUMNS if c in always or any(c in run.dataset.column_names for run in loaded)]
    dropped = {*ALL_SCORE_COLUMNS, *(by_model_column(c) for c in ALL_SCORE_COLUMNS), MAJORITY_COLUMN}
    parts = []
    for number, run in enumerate(loaded):
        rows = [index for key, (owner_run, index) in owner.items() if owner_run == number]
        if rows:
            kept = [c for c in run.dataset.column_names if c not in dropped]
            parts.append(run.dataset.select_columns(kept).select(rows))
    try:
        base = concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    except ValueError as error:
        raise ConfigError(f"the runs' rows have different columns ({error}); merge runs of one dataset.") from None
    positions = [{key: index for index, key in enumerate(run.keys)} for run in loaded]
    columns = [_score_columns(run.dataset, per_run) for run in loaded]
    answers = [majority_answers(run.dataset) for run in loaded]
    values: dict[str, list[dict[str, Any]]] = {column: [] for column in per_run}
    totals: dict[str, list[Any]] = {"difficulty": [], "num_correct": [], "num_rollouts": [], "num_truncated": []}
    failures, majority = [], []
    for key in keys:
        rows = [_row_scores(found, p.get(key), per_run) for found, p in zip(columns, positions)]
        for column in per_run:
            values[column].append({run.name: row[column] if row else None for run, row in zip(loaded, rows)})
        present = [row for row in rows if row is not None]
        scored = [row["difficulty"] for row in present if row["difficulty"] is not None]
        totals["difficulty"].append(rounded(float(np.mean(scored))) if scored else None)
        for column in ("num_correct", "num_rollouts", "num_truncated"):
            counts = [row.get(column) for row in present if row.get("num_rollouts") is not None]
            known = counts and all(count is not None for count in counts)
            totals[column].append(int(sum(counts)) if known else None)
        reasons = [
            f"{run.name}: " + ((row["difficulty_error"] or "not scored") if row else "row not in this run")
            for run, row in zip(loaded, rows)
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
    merged = base
    for column in per_run:
        kind = Value(_SCALAR_TYPES[column])
        merged = merged.add_column(by_model_column(column), values[column], feature={r.name: kind for r in loaded})
    merged = merged.add_column("difficulty", totals["difficulty"], feature=Value("float32"))
    for column in ("num_correct", "num_rollouts", "num_truncated"):
        if column in per_run:
            merged = merged.add_column(column, totals[column], feature=Value("int32"))
    merged = merged.add_column("difficulty_error", failures, feature=Value("string"))
    if any(a is not None for a in answers):
        merged = merged.add_column(MAJORITY_COLUMN, majority, feature={run.name: Value("string") for run in loaded})
    record = merged_provenance(
        {run.name: run.provenance for run in loaded}, model="mean of " + ", ".join(run.name for run in loaded)
    )
    record = {**with_finish_counts(record, merged), "comparison": comparison.summary()}
    return attach_provenance(merged, record)


#: The per-row score columns (one value per row, not the kept rollouts) and their types.
_SCALAR_TYPES = {name: kind for name, (kind, _) in SCORE_SCHEMA.items() if not kind.startswith("list[")}
#: The score columns a merged dataset keeps per run, as `<column>_by_model`.
PER_RUN_COLUMNS = tuple(_SCALAR_TYPES)


def _score_columns(dataset: Dataset, columns: Sequence[str]) -> dict[str, list[Any] | None]:
    """The run's per-row score columns (None for one it lacks)."""
    table = dataset.with_format("arrow")
    return {column: table[column].to_pylist() if column in dataset.column_names else None for column in columns}


def _row_scores(found: dict[str, list[Any] | None], index: int | None, columns: Sequence[str]) -> dict[str, Any] | None:
    """One row's score columns in one run (None: the run lacks the row). A present row's error is never None:
    empty where it was scored, its error (or "not scored") where it failed."""
    if index is None:
        return None
    row = {column: None if found[column] is None else found[column][index] for column in columns}
    row["difficulty"] = rounded(row["difficulty"])
    if row.get("difficulty") is None:
        row["difficulty_error"] = row.get("difficulty_error") or "not scored"
    else:
        row["difficulty_error"] = row.get("difficulty_error") or ""
    return row


__all__ = ["MAJORITY_COLUMN", "PER_RUN_COLUMNS", "RESERVED_RUN_NAMES", "merge_scores"]
