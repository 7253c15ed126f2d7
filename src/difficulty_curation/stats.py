"""Summaries of a scored dataset: bucket counts, a difficulty histogram, failed rows and their reasons."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset, DatasetDict

from difficulty_curation.buckets import PAPER_BUCKET_RANGES, bucket_of
from difficulty_curation.errors import require
from difficulty_curation.provenance import read_provenance
from difficulty_curation.redact import redact
from difficulty_curation.schema import finish_counts
from difficulty_curation.transforms import MODEL_DIFFICULTY_COLUMN, by_model_column, difficulty_array, model_names


@dataclass
class DifficultySummary:
    """Counts that describe a scored dataset."""

    num_rows: int
    num_scored: int
    num_failed: int
    buckets: dict[str, int]
    #: (difficulty value, number of rows) for every distinct difficulty, ascending.
    histogram: list[tuple[float, int]]
    #: failure reason -> number of rows, most common first.
    failure_reasons: dict[str, int] = field(default_factory=dict)
    #: (row index, reason) of the first failed rows.
    failed_rows: list[tuple[int, str]] = field(default_factory=list)
    #: rollouts that hit max_new_tokens, of `rollouts_finish_known` whose ending is known
    truncated_rollouts: int = 0
    rollouts_finish_known: int = 0
    #: rollouts scored before finish reasons were recorded: counted here, never guessed
    rollouts_finish_unknown: int = 0
    #: the run's max_new_tokens and truncation policy (from the provenance; None if it has none)
    max_new_tokens: int | None = None
    truncated_policy: str | None = None

    @property
    def truncated_share(self) -> float | None:
        """The share of rollouts with a known ending that hit max_new_tokens (None when no ending is known)."""
        return self.truncated_rollouts / self.rollouts_finish_known if self.rollouts_finish_known else None

    #: merged scores (`merge_scores`): model -> bucket -> rows, plus "failed" (rows that model could not score)
    #: and "missing" (rows that model's run does not hold).
    by_model: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {**asdict(self), "truncated_share": self.truncated_share}


def summarize(dataset: Dataset | DatasetDict, *, max_failed_rows: int = 20) -> DifficultySummary:
    """Bucket counts, histogram and failed rows of a scored dataset (all splits together for a DatasetDict)."""
    if isinstance(dataset, DatasetDict):
        parts = [summarize(split, max_failed_rows=max_failed_rows) for split in dataset.values()]
        return _merge(parts, max_failed_rows)
    provenance = read_provenance(dataset) or {}
    finished = finish_counts(dataset)
    values = difficulty_array(dataset).to_pylist()
    errors = dataset["difficulty_error"] if "difficulty_error" in dataset.column_names else [""] * len(values)
    buckets = Counter(bucket_of(v) for v in values if v is not None)
    scored = [round(float(v), 6) for v in values if v is not None]
    reasons: Counter[str] = Counter()
    failed: list[tuple[int, str]] = []
    for index, (value, error) in enumerate(zip(values, errors)):
        if value is None:
            reason = redact(error) if error else "not scored"
            reasons[_reason_kind(reason)] += 1
            if len(failed) < max_failed_rows:
                failed.append((index, reason))
    return DifficultySummary(
        num_rows=len(values),
        num_scored=len(scored),
        num_failed=len(values) - len(scored),
        buckets={name: buckets.get(name, 0) for name in PAPER_BUCKET_RANGES},
        histogram=sorted(Counter(scored).items()),
        failure_reasons=dict(reasons.most_common()),
        failed_rows=failed,
        truncated_rollouts=finished.truncated,
        rollouts_finish_known=finished.known,
        rollouts_finish_unknown=finished.unknown,
        max_new_tokens=provenance.get("max_new_tokens"),
        truncated_policy=provenance.get("truncated"),
        by_model=_by_model(dataset),
    )


def _by_model(dataset: Dataset) -> dict[str, dict[str, int]]:
    """Bucket counts of each model of a merged dataset (empty for one model's scores)."""
    names = model_names(dataset)
    if not names:
        return {}
    table = dataset.with_format("arrow")
    rows = table[MODEL_DIFFICULTY_COLUMN].to_pylist()
    errors_column = by_model_column("difficulty_error")
    errors = table[errors_column].to_pylist() if errors_column in dataset.column_names else [None] * len(rows)
    states = ["failed", "missing"] if errors_column in dataset.column_names else ["failed"]

    def state(value: float | None, error: str | None) -> str:
        # a null error of a merged run: the run lacks the row (merged before errors were kept: "failed")
        return bucket_of(value) or ("missing" if error is None and len(states) == 2 else "failed")

    counts = {
        name: Counter(state(row[name], (error or {}).get(name)) for row, error in zip(rows, errors)) for name in names
    }
    return {name: {b: counts[name].get(b, 0) for b in [*PAPER_BUCKET_RANGES, *states]} for name in names}


#: Runs with fewer scored rows than this never get the one-bucket warning: small runs often are one bucket.
MIN_ROWS_FOR_BUCKET_WARNING = 10
#: A run with a larger share of truncated rollouts than this ends with a warning.
MAX_TRUNCATED_SHARE = 0.10


def scoring_warnings(summary: DifficultySummary) -> list[str]:
    """What looks wrong with a finished run: more than half its rows failed, every scored row is in one
    bucket, or more than 10% of the rollouts hit max_new_tokens.

    These usually mean a setting is wrong (the answer column, the verifier, the endpoint, the token
    budget), not the data.
    """
    warnings = []
    if summary.num_rows and summary.num_failed * 2 > summary.num_rows:
        top = next(iter(summary.failure_reasons), "")
        warnings.append(
            f"{summary.num_failed} of {summary.num_rows} rows failed to score (more than half; most often: {top}). "
            "Check the reasons with `curate stats`, fix the cause and rerun with --retry-failed."
        )
    full = [name for name, count in summary.buckets.items() if count and count == summary.num_scored]
    if full and summary.num_scored >= MIN_ROWS_FOR_BUCKET_WARNING:
        warnings.append(
            f"all {summary.num_scored} scored rows are {full[0]}: check that --answer-column holds the answers "
            "and that --verifier suits them (see `curate audit` with --keep-rollouts)."
        )
    share = summary.truncated_share
    if share is not None and share > MAX_TRUNCATED_SHARE:
        limit = f"max_new_tokens={summary.max_new_tokens}" if summary.max_new_tokens else "max_new_tokens"
        counted = "left out of difficulty" if summary.truncated_policy == "exclude" else "judged as cut off"
        warnings.append(
            f"{summary.truncated_rollouts} of {summary.rollouts_finish_known} rollouts ({share:.1%}) hit {limit} "
            f"before finishing and were {counted}: difficulty then measures answer length, not hardness. "
            "Raise --max-new-tokens"
            + ("." if summary.truncated_policy == "exclude" else ", or rescore with --truncated exclude.")
        )
    return warnings


def plot_histogram(summary: DifficultySummary, path: str | Path, *, title: str = "Difficulty") -> Path:
    """Save the difficulty histogram as a PNG (needs matplotlib: `pip install difficulty-curation[plot]`).

    Raises:
        MissingDependencyError: matplotlib is not installed.
    """
    require("matplotlib", "plot", "the difficulty histogram")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 3.5), dpi=100)
    if summary.histogram:
        values, counts = zip(*summary.histogram)
        width = min(np.diff(values)) * 0.8 if len(values) > 1 else 0.05
        colors = ["#4caf50" if v == 0 else "#e53935" if v == 1 else "#1e88e5" for v in values]
        axes.bar(values, counts, width=width, color=colors)
    axes.set_xlabel("difficulty (fraction of rollouts wrong)")
    axes.set_ylabel("rows")
    axes.set_xlim(-0.08, 1.08)
    counts_text = ", ".join(f"{name} {count}" for name, count in summary.buckets.items())
    axes.set_title(f"{title}: {counts_text}" + (f", failed {summary.num_failed}" if summary.num_failed else ""))
    return save_figure(figure, path)


def save_figure(figure: Any, path: str | Path) -> Path:
    """Lay out, save as PNG (creating the folder) and close a matplotlib figure."""
    import matplotlib.pyplot as plt

    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path


def _reason_kind(reason: str) -> str:
    """Group reasons by their leading part ('image: image cannot be decoded (...)' -> up to the '(')."""
    return reason.split(" (", 1)[0]


def _merge(parts: list[DifficultySummary], max_failed_rows: int) -> DifficultySummary:
    histogram: Counter[float] = Counter()
    buckets: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    failed: list[tuple[int, str]] = []
    for part in parts:
        histogram.update(dict(part.histogram))
        buckets.update(part.buckets)
        reasons.update(part.failure_reasons)
        failed.extend(part.failed_rows)
    return DifficultySummary(
        num_rows=sum(p.num_rows for p in parts),
        num_scored=sum(p.num_scored for p in parts),
        num_failed=sum(p.num_failed for p in parts),
        buckets={name: buckets.get(name, 0) for name in PAPER_BUCKET_RANGES},
        histogram=sorted(histogram.items()),
        failure_reasons=dict(reasons.most_common()),
        failed_rows=failed[:max_failed_rows],
        truncated_rollouts=sum(p.truncated_rollouts for p in parts),
        rollouts_finish_known=sum(p.rollouts_finish_known for p in parts),
        rollouts_finish_unknown=sum(p.rollouts_finish_unknown for p in parts),
        max_new_tokens=next((p.max_new_tokens for p in parts if p.max_new_tokens), None),
        truncated_policy=next((p.truncated_policy for p in parts if p.truncated_policy), None),
        by_model=_merge_by_model(parts),
    )


def _merge_by_model(parts: list[DifficultySummary]) -> dict[str, dict[str, int]]:
    merged: dict[str, Counter[str]] = {}
    for part in parts:
        for name, counts in part.by_model.items():
            merged.setdefault(name, Counter()).update(counts)
    return {name: dict(counts) for name, counts in merged.items()}
