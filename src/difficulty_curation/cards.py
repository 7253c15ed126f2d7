"""Dataset cards for curated datasets: YAML metadata, provenance, bucket counts, a histogram.

Rendered with `huggingface_hub.DatasetCard` from a Jinja template (`cards/dataset_card.md.j2` by
default). Everything comes from the dataset itself, including the provenance record that scoring
wrote into it, so a folder scored days earlier still gets a complete card. No token is involved.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict

from difficulty_curation.buckets import PAPER_BUCKET_RANGES, PAPER_BUCKETS
from difficulty_curation.errors import ConfigError, CurationError
from difficulty_curation.provenance import per_run_settings, read_provenance
from difficulty_curation.redact import redact
from difficulty_curation.splits import as_splits
from difficulty_curation.stats import DifficultySummary, plot_histogram, summarize

DEFAULT_TEMPLATE = "dataset_card.md.j2"
HISTOGRAM_FILE = "difficulty_histogram.png"


def template_path(name: str = DEFAULT_TEMPLATE) -> Path:
    """A bundled card template: from the source tree's `cards/`, else the installed copy."""
    for folder in (
        Path(__file__).resolve().parents[2] / "cards",
        Path(sys.prefix) / "share" / "difficulty-curation" / "cards",
    ):
        if (folder / name).exists():
            return folder / name
    raise CurationError(f"card template {name!r} not found; pass template=PATH to use your own.")


def size_category(num_rows: int) -> str:
    """The Hub's `size_categories` value for a row count."""
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")]
    bounds += [(10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")]
    return next((label for bound, label in bounds if num_rows < bound), "n>1T")


def render_card(
    dataset: Dataset | DatasetDict,
    repo_id: str,
    *,
    buckets: Sequence[str] = PAPER_BUCKETS,
    template: str | Path | None = None,
    license: str | None = None,
    histogram: str = HISTOGRAM_FILE,
    configs: Mapping[str, Sequence[str]] | None = None,
    report: str | None = None,
    provenance: Mapping[str, Any] | None = None,
    summary: DifficultySummary | None = None,
) -> Any:
    """The `DatasetCard` for `dataset` published as `repo_id` with one config per bucket plus `all`.

    `configs` (config name -> its splits) overrides that list, e.g. to leave out empty buckets;
    `report` is the file name of the HTML report beside the card (`report.write_report`), linked from it.
    `provenance` and `summary` spare reading them again where the caller has them (`read_provenance`,
    `summarize`).
    """
    from huggingface_hub import DatasetCard, DatasetCardData

    provenance = read_provenance(dataset) if provenance is None else provenance
    if provenance is None:
        raise CurationError(
            "the dataset has no scoring provenance (it was not scored by difficulty-curation, or it lost its "
            "info); score it with `curate score` or `score_to_dir` first."
        )
    provenance = {key: redact(value) if isinstance(value, str) else value for key, value in provenance.items()}
    splits = list(as_splits(dataset))
    summary = summarize(dataset) if summary is None else summary
    if configs is None:
        configs = {name: splits for name in [*buckets, "all"]}
    config_names = list(configs)
    has_images = bool(provenance.get("image_column"))
    data = DatasetCardData(
        license=license or provenance.get("license"),
        size_categories=size_category(summary.num_rows),
        task_categories=["image-text-to-text" if has_images else "text-generation"],
        tags=["difficulty-curation", "dc-sft", "curated-by-difficulty"],
        pretty_name=f"{repo_id.split('/')[-1]} (curated by difficulty)",
        configs=[
            {"config_name": name, "data_files": [{"split": split, "path": f"{name}/{split}-*"} for split in parts]}
            for name, parts in configs.items()
        ],
    )
    scored = max(summary.num_scored, 1)
    bucket_rows = [
        {"name": name, "count": summary.buckets.get(name, 0), "share": f"{summary.buckets.get(name, 0) / scored:.1%}"}
        for name in buckets
    ]
    template_file = Path(template) if template is not None else template_path()
    if not template_file.is_file():
        raise CurationError(f"card template {str(template_file)!r} does not exist; pass the path of a Jinja file.")
    from jinja2 import TemplateError

    try:
        return DatasetCard.from_template(
            data,
            template_path=str(template_file),
            repo_id=repo_id,
            provenance=provenance,
            provenance_rows=[(key, markdown_cell(value, code=True)) for key, value in _provenance_rows(provenance)],
            bucket_rows=bucket_rows,
            failed=summary.num_failed,
            config_names=config_names,
            histogram=histogram,
            extractor=_extractor_text(provenance),
            mix=describe_mix(provenance["mix"]) if isinstance(provenance.get("mix"), Mapping) else None,
            comparison=provenance.get("comparison") if isinstance(provenance.get("comparison"), Mapping) else None,
            comparison_rows=comparison_rows(provenance.get("comparison") or {}),
            comparison_corner=_comparison_corner(provenance.get("comparison")),
            plan=describe_plan(provenance["plan"]) if isinstance(provenance.get("plan"), Mapping) else None,
            trainer_model=trainer_model(provenance),
            report=report,
        )
    except TemplateError as error:  # a syntax error, an unknown filter, a missing include
        where = f", line {error.lineno}" if getattr(error, "lineno", None) else ""
        raise ConfigError(
            f"card template {str(template_file)!r} has a Jinja error{where}: {error.message or error}; fix the template."
        ) from None


def trainer_model(provenance: Mapping[str, Any]) -> str:
    """The model the card's training snippet fine-tunes, as a Python string literal: the model that scored
    the rows, or a placeholder for merged scores (their `model` is "mean of ...", no model to load)."""
    merged = isinstance(provenance.get("merged_runs"), Mapping) and not provenance.get("difficulty_model")
    model = provenance.get("model")
    return json.dumps("your-org/your-model" if merged or not isinstance(model, str) or not model else model)


def describe_mix(recipe: Mapping[str, Any]) -> str:
    """A mix recipe from the provenance in one line: shares, rows drawn per bucket, seed and order."""
    ratio = ", ".join(f"{name}={share:g}" for name, share in recipe.get("ratio", {}).items())
    counts = ", ".join(f"{name} {count}" for name, count in recipe.get("counts", {}).items())
    view = f", by {recipe['model']}" if recipe.get("model") else ""
    return (
        f"{ratio} of {recipe.get('rows')} rows (drawn: {counts}), seed {recipe.get('seed')}, "
        f"order {recipe.get('order')}{view}" + (", short buckets allowed" if recipe.get("allow_short") else "")
    )


def describe_plan(plan: Mapping[str, Any]) -> str:
    """How `curate plan` chose k, from the provenance, in one line."""
    adaptive = " with adaptive sampling" if plan.get("recommended_adaptive") else ""
    return (
        f"a pilot of {plan.get('pilot_rows')} of {plan.get('dataset_rows')} rows scored at k={plan.get('max_k')}; "
        f"k={plan.get('recommended_k')}{adaptive} gave the same bucket as k={plan.get('max_k')} on "
        f"{plan.get('agreement', 0):.0%} of them (95% interval {plan.get('agreement_low', 0):.0%}-"
        f"{plan.get('agreement_high', 0):.0%})"
    )


def describe_runs(runs: Mapping[str, Mapping[str, Any]]) -> str:
    """The runs a merged dataset holds, in one line: name, model, seed and k of each."""
    return "; ".join(
        f"{name}: {run.get('model')} (seed {run.get('seed')}, k {run.get('num_rollouts')}, "
        f"extractor {run.get('answer_extractor') or 'auto'}, truncated share {run.get('truncated_share')})"
        for name, run in runs.items()
    )


def _extractor_text(provenance: Mapping[str, Any]) -> str:
    """Which extractor took the answers the verifier judged: one run's, or each merged run's own."""
    runs = provenance.get("merged_runs")
    if isinstance(runs, Mapping) and "answer_extractor" in (provenance.get("differs_by_run") or []):
        each = ", ".join(f"{name}: `{run.get('answer_extractor') or 'auto'}`" for name, run in runs.items())
        return f"each run's own extractor ({each})"
    return f"the `{provenance.get('answer_extractor') or 'auto'}` extractor"


def comparison_rows(comparison: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The stored comparison's transition matrix as table rows: from-bucket and the count per to-bucket."""
    from difficulty_curation.compare import STATES

    transitions = comparison.get("transitions", {})
    return [{"name": a, "counts": [transitions[a].get(b, 0) for b in STATES]} for a in STATES if a in transitions]


def markdown_cell(value: Any, *, code: bool = False) -> str:
    """`value` as one Markdown table cell: on one line (runs of whitespace, newlines included, become one
    space) with `|` escaped, so no value can split or end a row; `code=True` puts it in a code span
    fenced by more backticks than it holds, so a backtick in it cannot end the span."""
    text = " ".join(str(value).split())
    if code:
        longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
        fence = "`" * (longest + 1)
        pad = " " if text.startswith("`") or text.endswith("`") else ""
        text = f"{fence}{pad}{text}{pad}{fence}"
    return text.replace("|", "\\|")


def _comparison_corner(comparison: Any) -> str:
    """The top-left cell of the card's transition table: `FIRST \\ LAST` run names, as one cell."""
    names = comparison.get("names") if isinstance(comparison, Mapping) else None
    return markdown_cell(f"{names[0]} \\ {names[-1]}") if names else ""


def _provenance_rows(provenance: dict[str, Any]) -> list[tuple[str, Any]]:
    rows = {key: value for key, value in provenance.items() if value is not None}
    if isinstance(rows.get("mix"), Mapping):
        rows["mix"] = describe_mix(rows["mix"])
    if isinstance(rows.get("plan"), Mapping):
        rows["plan"] = describe_plan(rows["plan"])
    if isinstance(rows.get("merged_runs"), Mapping):
        rows["merged_runs"] = describe_runs(rows["merged_runs"])
    if isinstance(rows.get("comparison"), Mapping):
        summary = rows["comparison"]
        rows["comparison"] = (
            f"{' -> '.join(summary.get('names', []))}: {summary.get('matched')} rows matched, "
            f"{summary.get('bucket_changes')} changed bucket, Spearman {summary.get('rank_correlation')}"
        )
    rows.update(per_run_settings(provenance))  # merged runs: each run's own value, never run 1's
    rows.setdefault("model_revision", "not known (a local folder has no commit)")
    rows.setdefault("source_revision", "not known")
    rows["bucket_thresholds"] = ", ".join(f"{n} = difficulty in {b.describe()}" for n, b in PAPER_BUCKET_RANGES.items())
    return sorted(rows.items())


def card_paths(out: str | Path) -> tuple[Path, Path]:
    """Where a card written to `out` and its histogram go: `out` and `HISTOGRAM_FILE` beside it.

    Raises:
        ConfigError: `out` is the histogram's own path (the PNG would replace the card).
    """
    out = Path(out).expanduser()
    histogram = out.parent / HISTOGRAM_FILE
    if out.resolve() == histogram.resolve():
        raise ConfigError(
            f"--out {str(out)!r} is where the card's histogram goes (the PNG would replace the card); "
            "pass another file name, e.g. README.md."
        )
    return out, histogram


def write_card(dataset: Dataset | DatasetDict, out: str | Path, repo_id: str, **options: Any) -> tuple[Path, Path]:
    """Write the card to `out` (a README.md) and its histogram PNG beside it; returns both paths."""
    out, histogram = card_paths(out)
    summary = options.pop("summary", None) or summarize(dataset)
    # a bad template fails before any write
    card = render_card(dataset, repo_id, histogram=HISTOGRAM_FILE, summary=summary, **options)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure = plot_histogram(summary, histogram, title=repo_id.split("/")[-1])
    card.save(str(out))
    return out, figure
