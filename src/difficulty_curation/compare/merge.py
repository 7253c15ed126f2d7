"""`merge_scores`: every run's difficulty of the same rows in one dataset, under each model's name."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from datasets import Dataset

from difficulty_curation.compare.comparison import compare_loaded, rounded
from difficulty_curation.compare.runs import RunLike, load_runs, majority_answers
from difficulty_curation.errors import ConfigError
from difficulty_curation.redact import get_logger

#: The column `merge_scores` writes where rollouts were kept: model name -> that model's majority answer.
MAJORITY_COLUMN = "majority_answer_by_model"
logger = get_logger(__name__)


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
    comparison = compare_loaded(loaded, top=0)
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
        row = {run.name: rounded(v[p[key]]) if key in p else None for run, v, p in zip(loaded, values, positions)}
        scored = [value for value in row.values() if value is not None]
        by_model.append(row)
        means.append(rounded(float(np.mean(scored))) if scored else None)
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


__all__ = ["MAJORITY_COLUMN", "merge_scores"]
