"""Eval recipe: greedy decoding, the same verifiers as scoring, accuracy with a 95% interval per dataset."""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from datasets import Dataset

from difficulty_curation.columns import Columns
from difficulty_curation.config import DEFAULT_BATCH_SIZE, RolloutConfig
from difficulty_curation.provenance import read_provenance
from difficulty_curation.recipes.options import judging_options
from difficulty_curation.runners.in_memory import score_dataset
from difficulty_curation.scoring import score_difficulty
from difficulty_curation.stats import save_figure
from difficulty_curation.verifiers import Verifier, verifier_name


@dataclass
class DatasetResult:
    """One model on one dataset."""

    dataset: str
    correct: int
    total: int
    #: rows that could not be scored (counted as wrong)
    failed: int
    ood: bool = False
    #: rows whose answer hit max_new_tokens under truncated="exclude": judged neither way, not in `total`
    excluded: int = 0
    #: how answers were judged (`recipes.options.JUDGING_OPTIONS`): as the set was scored unless overridden
    judging: dict[str, Any] = field(default_factory=dict)

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
    verifier: str | Verifier | None = None,
    answer_extractor: str | None = None,
    answer_pattern: str | None = None,
    truncated: str | None = None,
    max_new_tokens: int = RolloutConfig.max_new_tokens,
    batch_size: int = DEFAULT_BATCH_SIZE,
    columns: Columns = Columns(),
    progress: bool = False,
) -> EvalReport:
    """Greedy-decode one answer per row and judge it as scoring does; one result per dataset.

    Each set's answers are judged as that set was scored (the verifier, answer extractor and pattern
    and truncation policy in its provenance; `ScoringConfig`'s defaults for a set never scored), by
    the scorer's own `judge`; `verifier`, `answer_extractor`, `answer_pattern` and `truncated`, when
    given, override that for every set (see `recipes.options.judging_options`). With
    `truncated="exclude"`, a row whose answer hit `max_new_tokens` counts neither way (`excluded`).
    `ood` names the datasets that are out of distribution (marked OOD in tables and plots); `columns`
    says which columns hold the prompt, answer and images (and the system prompt), as in scoring.

    Raises:
        ConfigError: a missing or incomplete local model, a dataset without rows, an `ood` name
            that is not one of `datasets`, or a bad judging option (all before anything is generated).

    Example:
        >>> report = evaluate("sft-m/merged", {"id": test, "ood": inverted}, ood={"ood"})  # doctest: +SKIP
    """
    from difficulty_curation.errors import ConfigError

    check_models([model])
    empty = [name for name, dataset in datasets.items() if len(dataset) == 0]
    if empty:
        raise ConfigError(f"evaluation set {empty[0]!r} has no rows; pass a set (or split) with rows.")
    unknown = set(ood) - set(datasets)
    if unknown:
        raise ConfigError(
            f"ood {', '.join(sorted(unknown))} (--ood) names no evaluation set; known: {', '.join(datasets)}."
        )
    scorer = score_difficulty(model, num_rollouts=1, temperature=0.0, max_new_tokens=max_new_tokens, **asdict(columns))
    chosen = {"answer_extractor": answer_extractor, "answer_pattern": answer_pattern, "truncated": truncated}
    judges = {}
    for name, dataset in datasets.items():  # every set's judging is checked before anything is generated
        judging = judging_options(read_provenance(dataset), verifier=verifier, **chosen)
        judges[name] = (scorer.judging(**judging), {**judging, "verifier": verifier_name(judging["verifier"])})
    report = EvalReport(model=model)
    for name, dataset in datasets.items():
        judge, judging = judges[name]
        scored = score_dataset(dataset, judge, batch_size=batch_size, progress=progress)
        correct, truncated_rows = scored["num_correct"][:], scored["num_truncated"][:]
        excluded = sum(c is None and t == 1 for c, t in zip(correct, truncated_rows))
        excluded = excluded if judge.config.truncated == "exclude" else 0
        report.results.append(
            DatasetResult(
                dataset=name,
                correct=sum(c for c in correct if c is not None),
                total=len(correct) - excluded,
                failed=sum(c is None for c in correct) - excluded,
                ood=name in ood,
                excluded=excluded,
                judging=judging,
            )
        )
    return report


def load_eval_sets(specs: Sequence[str], *, split: str = "test") -> dict[str, Dataset]:
    """Evaluation sets by name from `NAME=PATH` specs (`curate eval --dataset`), each loaded with `load_source`.

    A source with several splits gives its `split`; a source with one (a single parquet file, say)
    gives that one, whatever it is called.

    Raises:
        ConfigError: a spec that is not NAME=PATH, a NAME given twice, or a set without rows.

    Example:
        >>> sets = load_eval_sets(["id=test.parquet", "ood=rotated/"])  # doctest: +SKIP
    """
    from datasets import DatasetDict

    from difficulty_curation.errors import ConfigError
    from difficulty_curation.sources import load_source

    sets: dict[str, Dataset] = {}
    for spec in specs:
        name, separator, path = spec.partition("=")
        if not separator or not name or not path:
            raise ConfigError(f"--dataset {spec!r} is not NAME=PATH, e.g. --dataset id=test.parquet")
        if name in sets:
            raise ConfigError(f"--dataset {name}= is given twice; give each evaluation set its own NAME.")
        loaded = load_source(path)
        if isinstance(loaded, DatasetDict) and len(loaded) != 1:
            loaded = load_source(path, split=split)
        sets[name] = next(iter(loaded.values())) if isinstance(loaded, DatasetDict) else loaded
        if len(sets[name]) == 0:
            raise ConfigError(f"--dataset {spec!r} has no rows to evaluate; pass a set (or --split) with rows.")
    return sets


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


def write_report(
    reports: Sequence[EvalReport],
    out_dir: str | Path,
    *,
    names: Sequence[str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write `results.json`, `results.md` and `accuracy.png` as the folder `out_dir`, aside then swapped in.

    A non-empty `out_dir` is refused unless `overwrite` and it is an earlier eval output; the
    evaluated models and run folders are never written into (see `difficulty_curation.outputs`).
    """
    from difficulty_curation.outputs import write_aside

    models = [report.model for report in reports]
    with write_aside(out_dir, overwrite=overwrite, earlier=EVAL_FILES, protect=_local(models)) as staging:
        (staging / "results.json").write_text(json.dumps([r.to_dict() for r in reports], indent=1))
        (staging / "results.md").write_text(markdown_table(reports, names=names))
        plot_accuracy(reports, staging / "accuracy.png", names=names)
    return Path(out_dir)


def check_report_folder(out_dir: str | Path, models: Sequence[str], *, overwrite: bool = False) -> Path:
    """Refuse `out_dir` before any evaluation if `write_report` would refuse it."""
    from difficulty_curation.outputs import check_output

    return check_output(out_dir, overwrite=overwrite, earlier=EVAL_FILES, protect=_local(models))


def check_models(models: Sequence[str]) -> None:
    """Refuse, before any evaluation, a model that is a missing local path or a folder saved only in part.

    Raises:
        ConfigError: naming the model and what is missing.
    """
    from difficulty_curation.errors import ConfigError
    from difficulty_curation.sources import looks_like_path

    for model in models:
        path = Path(model).expanduser()
        if not path.exists():
            if looks_like_path(model):
                raise ConfigError(f"model {model!r} does not exist; pass an existing model folder or a Hub id.")
            continue
        if not path.is_dir():
            raise ConfigError(f"model {model!r} is a file; pass a model folder or a Hub id.")
        missing = _missing_weights(path)
        if missing:
            raise ConfigError(
                f"model {model!r} is incomplete ({missing}): its save was interrupted; save or train it again."
            )


#: The files that make a folder an earlier eval output (`overwrite` may replace it).
EVAL_FILES = ("results.json",)


def _missing_weights(folder: Path) -> str:
    """What a model folder lacks to load: the weights beside its config or adapter config; empty if nothing."""
    names = {entry.name for entry in folder.iterdir()}
    if "adapter_config.json" in names and not names & {"adapter_model.safetensors", "adapter_model.bin"}:
        return "adapter_config.json without adapter weights"
    weights = any(name.endswith((".safetensors", ".bin", ".safetensors.index.json")) for name in names)
    if "config.json" in names and not weights and "adapter_config.json" not in names:
        return "config.json without weights"
    return ""


def _local(models: Sequence[str]) -> list[str]:
    return [model for model in models if Path(model).expanduser().exists()]
