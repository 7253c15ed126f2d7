"""Provenance: the record of how a dataset was scored, written into and read back from the dataset.

The record is the scoring config plus the model and source revisions, the toolkit version, the
date, and how many rollouts were truncated (`with_finish_counts`). It lives in each split's `DatasetInfo.description` (kept by `save_to_disk`), so a folder
scored days earlier still gets a complete dataset card.
"""

from __future__ import annotations

import datetime
import json
from typing import TYPE_CHECKING, Any

from difficulty_curation.config import ScoringConfig
from difficulty_curation.redact import redact
from difficulty_curation.schema import FinishCounts, finish_counts
from difficulty_curation.splits import as_splits, first_split
from difficulty_curation.version import __version__

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict

#: How a provenance record is marked inside `DatasetInfo.description`.
PROVENANCE_PREFIX = "difficulty-curation provenance: "


def provenance_record(
    config: ScoringConfig,
    *,
    model_revision: str | None = None,
    source: str | None = None,
    source_revision: str | None = None,
) -> dict[str, Any]:
    """Everything needed to reproduce a dataset's scores: config, model revision, source, version, date."""
    return {
        **config.to_dict(),
        "model_revision": model_revision or config.revision,
        "source": source,
        "source_revision": source_revision,
        "toolkit_version": __version__,
        "scored_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def attach_provenance(dataset: Dataset | DatasetDict, record: dict[str, Any]) -> Dataset | DatasetDict:
    """Write `record` into each split's `info.description` (kept by `save_to_disk`), in place; returns it."""
    for part in as_splits(dataset).values():
        part.info.description = PROVENANCE_PREFIX + json.dumps(record, sort_keys=True)
    return dataset


def read_provenance(dataset: Dataset | DatasetDict) -> dict[str, Any] | None:
    """The provenance record a scoring run wrote into the dataset, or None."""
    description = first_split(dataset).info.description or ""
    if not description.startswith(PROVENANCE_PREFIX):
        return None
    return json.loads(description[len(PROVENANCE_PREFIX) :])


def with_finish_counts(record: dict[str, Any], dataset: Dataset | DatasetDict) -> dict[str, Any]:
    """`record` plus how the scored `dataset`'s rollouts ended: how many were truncated (hit
    max_new_tokens), their share of those whose ending is known, and how many endings are not known."""
    counts = sum((finish_counts(part) for part in as_splits(dataset).values()), FinishCounts())
    share = counts.truncated_share
    return {
        **record,
        "truncated_rollouts": counts.truncated,
        "truncated_share": None if share is None else round(share, 4),
        "rollouts_finish_unknown": counts.unknown,
    }


def scoring_provenance(scorer: Any, *, source: str | None = None) -> dict[str, Any]:
    """The provenance record of a run with `scorer` (a `DifficultyScorer`; the model revision read
    from its engine when one is loaded)."""
    revision = getattr(scorer.engine, "model_revision", None) if scorer.engine_loaded else None
    record = provenance_record(scorer.config, model_revision=revision, source=source)
    details = getattr(scorer.engine, "provenance_details", None) if scorer.engine_loaded else None
    return {**record, **details()} if details is not None else record


#: Provenance keys that describe one run, never several: a merged record keeps them only per run.
PER_RUN_KEYS = ("scored_at", "truncated_rollouts", "truncated_share", "rollouts_finish_unknown")


def merged_provenance(records: dict[str, dict[str, Any]], *, model: str) -> dict[str, Any]:
    """The provenance of several runs' scores merged into one dataset.

    Facts every run shares stay at the top level; each run's own record, complete, is kept under its
    name in `merged_runs`, and `differs_by_run` lists the keys whose values differ between runs (so
    no reader takes one run's extractor, seed or truncation share for all of them). Any `mix` recipe
    of the runs is dropped: the merged rows are every run's rows, not one draw.
    """
    runs = list(records.values())
    keys = sorted({key for record in runs for key in record if key not in ("mix", "merged_runs", "comparison")})
    shared = {key: runs[0].get(key) for key in keys if all(record.get(key) == runs[0].get(key) for record in runs)}
    differing = [key for key in keys if key not in shared]
    for key in PER_RUN_KEYS:
        shared.pop(key, None)
    return {**shared, "model": model, "merged_runs": records, "differs_by_run": differing}


def model_view_provenance(record: dict[str, Any], model: str) -> dict[str, Any]:
    """The provenance of a merged dataset whose `difficulty` column now holds run `model`'s scores:
    that run's own record, plus the merged runs, their comparison and `difficulty_model` (the run's name)."""
    runs = record.get("merged_runs") or {}
    run = runs.get(model)
    if not isinstance(run, dict):
        return {**record, "difficulty_model": model}
    extra = {key: record[key] for key in ("merged_runs", "comparison") if key in record}
    return {**{k: v for k, v in run.items() if k != "mix"}, **extra, "difficulty_model": model}


def per_run_settings(record: dict[str, Any]) -> dict[str, str]:
    """A merged record's settings that differ between its runs, each as one line: `{"answer_extractor":
    "7b: boxed; 72b: answer-is"}` (a key the merged record also holds for all runs, such as the pooled
    `truncated_share`, comes back as `truncated_share per run`). Empty for one run's record."""
    runs = record.get("merged_runs")
    if not isinstance(runs, dict):
        return {}
    lines = {}
    for key in record.get("differs_by_run") or []:
        line = "; ".join(f"{name}: {run.get(key) if isinstance(run, dict) else None}" for name, run in runs.items())
        lines[f"{key} per run" if key in record else key] = redact(line)
    return lines
