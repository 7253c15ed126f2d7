"""Eval recipe: greedy decoding, the same verifiers as scoring, accuracy with a 95% interval per dataset."""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from datasets import Dataset

from difficulty_curation.config import DEFAULT_BATCH_SIZE, RolloutConfig, ScoringConfig
from difficulty_curation.runners.in_memory import score_dataset
from difficulty_curation.scoring import score_difficulty
from difficulty_curation.stats import save_figure


@dataclass
class DatasetResult:
    """One model on one dataset."""

    dataset: str
    correct: int
    total: int
    #: rows that could not be scored (counted as wrong)
    failed: int
    ood: bool = False

    @property
    def accuracy(self) -> float:
        """Share of rows answered correctly."""
        return self.correct / self.total if self.total else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        """95% Wilson score interval of the accuracy."""
        return wilson_interval(self.correct, self.total)


@dataclass
class EvalReport:
    """One model on several datasets."""

    model: str
    results: list[DatasetResult] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON form, with accuracy and interval spelled out."""
        return {
            "model": self.model,
            "results": [
                {**asdict(r), "accuracy": r.accuracy, "ci95_low": r.interval[0], "ci95_high": r.interval[1]}
                for r in self.results
            ],
        }


def wilson_interval(correct: int, total: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval for a binomial proportion (95% by default)."""
    if total == 0:
        return 0.0, 1.0
    p = correct / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return max(0.0, centre - half), min(1.0, centre + half)


def evaluate(
    model: str,
    datasets: Mapping[str, Dataset],
    *,
    ood: Collection[str] = (),
    verifier: str = ScoringConfig.verifier,
    max_new_tokens: int = RolloutConfig.max_new_tokens,
    batch_size: int = DEFAULT_BATCH_SIZE,
    prompt_column: str = ScoringConfig.prompt_column,
    answer_column: str = ScoringConfig.answer_column,
    image_column: str | None = ScoringConfig.image_column,
    system_prompt: str | None = None,
    progress: bool = False,
) -> EvalReport:
    """Greedy-decode one answer per row and judge it with `verifier`; one result per dataset.

    Example:
        >>> report = evaluate("sft-m/merged", {"id": test, "ood": inverted}, ood={"ood"})  # doctest: +SKIP
    """
    scorer = score_difficulty(
        model,
        num_rollouts=1,
        temperature=0.0,
        max_new_tokens=max_new_tokens,
        verifier=verifier,
        prompt_column=prompt_column,
        answer_column=answer_column,
        image_column=image_column,
        system_prompt=system_prompt,
    )
    report = EvalReport(model=model)
    for name, dataset in datasets.items():
        scored = score_dataset(dataset, scorer, batch_size=batch_size, progress=progress)
        correct = scored["num_correct"][:]
        report.results.append(
            DatasetResult(
                dataset=name,
                correct=sum(c for c in correct if c is not None),
                total=len(correct),
                failed=sum(c is None for c in correct),
                ood=name in ood,
            )
        )
    return report


def markdown_table(reports: Sequence[EvalReport], *, names: Sequence[str] | None = None) -> str:
    """Rows = models, columns = datasets (marked ID or OOD), cells = accuracy [95% interval]."""
    datasets = [r.dataset for r in reports[0].results] if reports else []
    kinds = {r.dataset: "OOD" if r.ood else "ID" for report in reports for r in report.results}
    header = "| model | " + " | ".join(f"{d} ({kinds[d]})" for d in datasets) + " |"
    lines = [header, "| --- |" + " ---: |" * len(datasets)]
    for position, report in enumerate(reports):
        by_name = {r.dataset: r for r in report.results}
        cells = []
        for dataset in datasets:
            result = by_name[dataset]
            low, high = result.interval
            cells.append(f"{result.accuracy:.1%} [{low:.1%}, {high:.1%}]")
        label = names[position] if names else report.model
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_accuracy(reports: Sequence[EvalReport], path: str | Path, *, names: Sequence[str] | None = None) -> Path:
    """Grouped bar plot of accuracy with 95% intervals, one group per dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    datasets = [r.dataset for r in reports[0].results]
    width = 0.8 / max(len(reports), 1)
    figure, axes = plt.subplots(figsize=(1.5 + 1.2 * len(datasets) * max(1, len(reports) / 3), 3.8), dpi=100)
    for position, report in enumerate(reports):
        by_name = {r.dataset: r for r in report.results}
        accuracy = np.array([by_name[d].accuracy for d in datasets])
        low = np.array([by_name[d].interval[0] for d in datasets])
        high = np.array([by_name[d].interval[1] for d in datasets])
        x = np.arange(len(datasets)) + position * width
        label = names[position] if names else Path(report.model).name
        axes.bar(x, accuracy, width, yerr=[accuracy - low, high - accuracy], capsize=2, label=label)
    kinds = {r.dataset: "OOD" if r.ood else "ID" for r in reports[0].results}
    axes.set_xticks(np.arange(len(datasets)) + 0.4 - width / 2, [f"{d}\n({kinds[d]})" for d in datasets])
    axes.set_ylabel("accuracy (greedy)")
    axes.set_ylim(0, 1)
    axes.legend(fontsize=7, ncols=2)
    return save_figure(figure, path)


def write_report(reports: Sequence[EvalReport], out_dir: str | Path, *, names: Sequence[str] | None = None) -> Path:
    """Write `results.json`, `results.md` and `accuracy.png` into `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps([r.to_dict() for r in reports], indent=1))
    (out_dir / "results.md").write_text(markdown_table(reports, names=names))
    plot_accuracy(reports, out_dir / "accuracy.png", names=names)
    return out_dir
