"""A self-contained HTML page that shows what each bucket holds and why: `write_report` / `curate report`.

One file, no network needed to open it: styles inline, images as small embedded thumbnails, a
Content-Security-Policy that allows no script at all. It shows the provenance, the bucket counts
and histogram, a seeded sample of rows per bucket (thumbnails, prompt, reference, difficulty, and
each kept rollout with its verdict and extracted answer), the hard-row audit's clusters, the failed
rows with their reasons and, given a second run, the transition matrix between the two. Only the
sampled rows are read and decoded, so a large dataset renders in seconds. All text is escaped
(Jinja autoescape) and redacted.
"""

from __future__ import annotations

import base64
import io
import os
import random
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from difficulty_curation.answers import extractor_for
from difficulty_curation.buckets import PAPER_BUCKET_RANGES, PAPER_BUCKETS, bucket_of
from difficulty_curation.config import ScoringConfig
from difficulty_curation.errors import ConfigError
from difficulty_curation.provenance import read_provenance
from difficulty_curation.redact import get_logger, redact
from difficulty_curation.splits import as_splits

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict

logger = get_logger(__name__)

#: Above this size the report is still written, with a warning naming the options that shrink it.
MAX_REPORT_BYTES = 10_000_000
DEFAULT_ROWS_PER_BUCKET = 24
DEFAULT_THUMBNAIL_SIZE = 128
#: Images shown per row, rollout text shown per rollout, prompt text shown per row.
MAX_IMAGES_PER_ROW = 4
MAX_ROLLOUT_CHARS = 1_500
MAX_PROMPT_CHARS = 3_000
MAX_AUDIT_GROUPS = 20
MAX_MOVED_ROWS = 12
AUDIT_EXAMPLES = 4
#: Provenance keys shown first, where present (the rest follow in a full table).
KEY_SETTINGS = (
    "model",
    "model_revision",
    "backend",
    "num_rollouts",
    "temperature",
    "top_p",
    "top_k",
    "max_new_tokens",
    "seed",
    "verifier",
    "correct_threshold",
    "answer_extractor",
    "answer_pattern",
    "truncated",
    "chat_template_kwargs",
    "source",
)
#: The per-rollout finish reasons ("length" = cut off at max_new_tokens) of runs that kept rollouts.
FINISH_COLUMN = "rollout_finish_reasons"


@dataclass
class ReportInfo:
    """What `write_report` wrote."""

    path: Path
    size_bytes: int
    num_rows: int
    #: bucket -> rows shown on the page.
    sampled_rows: dict[str, int] = field(default_factory=dict)
    num_thumbnails: int = 0
    compared_with: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {**asdict(self), "path": str(self.path)}


def write_report(
    scored: Dataset | DatasetDict | str | Path,
    out: str | Path = "report.html",
    *,
    compare: Dataset | DatasetDict | str | Path | None = None,
    rows_per_bucket: int = DEFAULT_ROWS_PER_BUCKET,
    seed: int = 0,
    split: str | None = None,
    thumbnail_size: int = DEFAULT_THUMBNAIL_SIZE,
    title: str | None = None,
) -> ReportInfo:
    """Write one self-contained HTML page about a scored dataset (see the module docstring).

    Args:
        scored: a scored dataset, or anything `load_source` reads (a run folder, a `save_to_disk` folder, a file).
        out: the HTML file to write (replaced atomically if it exists).
        compare: a second scored run of the same rows: adds the transition matrix and rows that moved.
        rows_per_bucket: rows sampled per bucket (seeded by `seed`); only these are read and decoded.
        split: only this split (default: every split).
        thumbnail_size: longest side of an embedded thumbnail, in pixels.
        title: the page title (default: the source's name).

    Returns:
        `ReportInfo` with the path, its size and the rows sampled per bucket.

    Raises:
        ConfigError: bad options, or a dataset without a `difficulty` column.

    Example:
        >>> info = write_report("scored/", "report.html", rows_per_bucket=12)  # doctest: +SKIP
        >>> print(info.size_bytes)  # doctest: +SKIP
    """
    if isinstance(rows_per_bucket, bool) or not isinstance(rows_per_bucket, int) or rows_per_bucket < 0:
        raise ConfigError(f"rows_per_bucket must be an integer >= 0, got {rows_per_bucket!r}.")
    if isinstance(thumbnail_size, bool) or not isinstance(thumbnail_size, int) or not 8 <= thumbnail_size <= 1024:
        raise ConfigError(f"thumbnail_size must be an integer from 8 to 1024 pixels, got {thumbnail_size!r}.")
    out = Path(out)
    if out.is_dir():
        raise ConfigError(f"--out {str(out)!r} is a folder; pass the path of an .html file.")
    name = title or (Path(str(scored)).name if isinstance(scored, (str, Path)) else "scored dataset")
    splits = _load(scored, split)
    page = _Page(splits, thumbnail_size=thumbnail_size)
    context = page.context(rows_per_bucket, seed)
    compared_with = None
    if compare is not None:
        compared_with = Path(str(compare)).name if isinstance(compare, (str, Path)) else "second run"
        context["comparison"] = page.comparison(compare, [name, compared_with])
    html = _template().render(title=name, **context)
    size = _write_atomic(out, html.encode("utf-8"))
    if size > MAX_REPORT_BYTES:
        logger.warning(
            "the report is %.1f MB (over %.0f MB): pass a smaller --rows-per-bucket or --thumbnail-size",
            size / 1e6,
            MAX_REPORT_BYTES / 1e6,
        )
    return ReportInfo(
        path=out,
        size_bytes=size,
        num_rows=context["summary"].num_rows,
        sampled_rows={bucket["name"]: len(bucket["rows"]) for bucket in context["buckets"]},
        num_thumbnails=page.num_thumbnails,
        compared_with=compared_with,
    )


def _load(scored: Any, split: str | None) -> DatasetDict:
    from datasets import Dataset, DatasetDict

    if isinstance(scored, (str, Path)):
        from difficulty_curation.sources import load_source

        scored = load_source(scored, split=split)
    elif split is not None and isinstance(scored, DatasetDict):
        if split not in scored:
            raise ConfigError(f"split {split!r} is not in the dataset; available splits: {', '.join(scored)}.")
        scored = scored[split]
    if not isinstance(scored, (Dataset, DatasetDict)):
        raise ConfigError(f"expected a Dataset, a DatasetDict or a path, got {type(scored).__name__}.")
    splits = DatasetDict(as_splits(scored))
    for name, part in splits.items():
        if "difficulty" not in part.column_names:
            raise ConfigError(
                f"split {name!r} has no `difficulty` column: score it first (curate score / score_to_dir)."
            )
    return splits


class _Page:
    """Everything the template shows, read from one scored dataset."""

    def __init__(self, splits: DatasetDict, *, thumbnail_size: int) -> None:
        from difficulty_curation.schema import undecoded_images

        self.provenance = read_provenance(splits) or {}
        defaults = ScoringConfig(model="unknown")
        self.prompt_column = self.provenance.get("prompt_column", defaults.prompt_column)
        self.answer_column = self.provenance.get("answer_column", defaults.answer_column)
        image_column = self.provenance.get("image_column", defaults.image_column)
        self.threshold = float(self.provenance.get("correct_threshold", defaults.correct_threshold))
        #: the answer the run's verifier judged: the run's own extractor (`auto` for runs that name none)
        self.extract = extractor_for(
            self.provenance.get("answer_extractor") or "auto", self.provenance.get("answer_pattern")
        )
        columns = set().union(*(part.column_names for part in splits.values()))
        self.image_column = image_column if image_column in columns else None
        self.splits = {name: undecoded_images(part, self.image_column) for name, part in splits.items()}
        self.thumbnail_size = thumbnail_size
        self.num_thumbnails = 0
        self.multi_split = len(self.splits) > 1

    def context(self, rows_per_bucket: int, seed: int) -> dict[str, Any]:
        from difficulty_curation.stats import summarize

        summary = summarize(_as_dataset_dict(self.splits))
        scored = max(summary.num_scored, 1)
        candidates = self.bucket_candidates()
        rng = random.Random(seed)
        buckets = []
        for name in PAPER_BUCKETS:
            pool = candidates[name]
            chosen = sorted(rng.sample(pool, min(rows_per_bucket, len(pool))))
            buckets.append(
                {
                    "name": name,
                    "range": PAPER_BUCKET_RANGES[name].describe(),
                    "count": summary.buckets.get(name, 0),
                    "share": f"{summary.buckets.get(name, 0) / scored:.1%}",
                    "rows": self.rows(chosen),
                }
            )
        return {
            "summary": summary,
            "settings": self.settings(),
            "histogram": _histogram_svg(summary.histogram),
            "buckets": buckets,
            "audit": self.audit(),
            "failed": self.failed(summary),
            "has_rollouts": any("rollouts" in part.column_names for part in self.splits.values()),
            "comparison": None,
        }

    def settings(self) -> dict[str, list[tuple[str, str]]]:
        record = {key: _text(value) for key, value in sorted(self.provenance.items()) if value is not None}
        if self.provenance and not record.get("model_revision"):
            record["model_revision"] = "not known (a local folder has no commit)"
        key = [(name, record[name]) for name in KEY_SETTINGS if name in record]
        return {"key": key, "all": sorted(record.items())}

    def bucket_candidates(self) -> dict[str, list[tuple[str, int]]]:
        """bucket -> every (split, row index) in it, read from the difficulty column alone."""
        from difficulty_curation.transforms import difficulty_array

        candidates: dict[str, list[tuple[str, int]]] = {name: [] for name in PAPER_BUCKETS}
        for split, part in self.splits.items():
            for index, value in enumerate(difficulty_array(part).to_pylist()):
                bucket = bucket_of(value)
                if bucket is not None:
                    candidates[bucket].append((split, index))
        return candidates

    def rows(self, keys: Sequence[tuple[str, int]]) -> list[dict[str, Any]]:
        """The sampled rows, read with `select` (only these are decoded)."""
        shown = []
        by_split: dict[str, list[int]] = {}
        for split, index in keys:
            by_split.setdefault(split, []).append(index)
        for split, indices in by_split.items():
            for index, row in zip(indices, self.splits[split].select(indices)):
                shown.append(self.row(split, index, row))
        return shown

    def row(self, split: str, index: int, row: dict[str, Any]) -> dict[str, Any]:
        difficulty = row.get("difficulty")
        low, high = row.get("pass_rate_low"), row.get("pass_rate_high")
        interval = None
        if low is not None and high is not None:  # the pass-rate interval, as an interval of difficulty
            interval = f"[{1 - float(high):.3f}, {1 - float(low):.3f}]"
        return {
            "label": f"{split} row {index}" if self.multi_split else f"row {index}",
            "thumbnails": self.thumbnails(row),
            "prompt": _clip(_prompt_text(row.get(self.prompt_column)), MAX_PROMPT_CHARS),
            "reference": _text(row.get(self.answer_column)),
            "difficulty": None if difficulty is None else f"{float(difficulty):.3f}",
            "interval": interval,
            "num_correct": row.get("num_correct"),
            "num_rollouts": row.get("num_rollouts"),
            "num_truncated": row.get("num_truncated"),
            "error": redact(row.get("difficulty_error") or ""),
            "rollouts": self.rollouts(row),
        }

    def rollouts(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        """Each kept rollout with its score, verdict and extracted answer."""
        completions = row.get("rollouts") or []
        scores = row.get("rollout_scores") or []
        finishes = row.get(FINISH_COLUMN)
        shown = []
        for position, completion in enumerate(completions):
            score = scores[position] if position < len(scores) else None
            truncated = _is_truncated(finishes[position]) if finishes and position < len(finishes) else False
            right = score is not None and float(score) >= self.threshold
            answer = self.extract(completion or "")
            shown.append(
                {
                    "text": _clip(redact(completion or ""), MAX_ROLLOUT_CHARS),
                    "score": None if score is None else f"{float(score):.2f}",
                    "verdict": "truncated" if truncated else "right" if right else "wrong",
                    "answer": _clip(redact(answer if answer is not None else ""), 200),
                }
            )
        return shown

    def thumbnails(self, row: dict[str, Any]) -> list[dict[str, str]]:
        """Up to `MAX_IMAGES_PER_ROW` embedded thumbnails; an image that cannot be decoded says why instead."""
        if self.image_column is None:
            return []
        value = row.get(self.image_column)
        cells = value if isinstance(value, list) else [value]
        shown = []
        for cell in cells[:MAX_IMAGES_PER_ROW]:
            shown.append(self.thumbnail(cell))
        if len(cells) > MAX_IMAGES_PER_ROW:
            shown.append({"missing": f"+{len(cells) - MAX_IMAGES_PER_ROW} more images"})
        return shown

    def thumbnail(self, cell: Any) -> dict[str, str]:
        from difficulty_curation.errors import RowError
        from difficulty_curation.prompts import load_image

        if cell is None:
            return {"missing": "no image"}
        try:
            image = load_image(cell, column=self.image_column or "image", max_pixels=None)
        except RowError as error:
            return {"missing": redact(str(error))}
        self.num_thumbnails += 1
        small = max(image.size) <= 64  # shown enlarged: keep its pixels sharp
        return {
            "src": _data_uri(image, self.thumbnail_size),
            "size": f"{image.width}x{image.height}",
            "class": "pixels" if small else "photo",
        }

    def audit(self) -> dict[str, Any] | None:
        """The hard-row audit's clusters with example thumbnails; None without kept rollouts."""
        from difficulty_curation.audit import audit_hard_rows

        groups = []
        for split, part in self.splits.items():
            if "rollouts" not in part.column_names or self.answer_column not in part.column_names:
                return None
            for group in audit_hard_rows(part, answer_column=self.answer_column):
                groups.append((split, group))
        groups.sort(key=lambda item: -item[1].count)
        shown = []
        for split, group in groups[:MAX_AUDIT_GROUPS]:
            examples = self.splits[split].select(group.rows[:AUDIT_EXAMPLES])
            shown.append(
                {
                    "reference": redact(group.reference),
                    "majority": redact(group.majority_answer),
                    "count": group.count,
                    "agreement": f"{group.agreement:.0%}",
                    "rows": ", ".join(str(i) for i in group.rows[:10]) + (" ..." if group.count > 10 else ""),
                    "split": split if self.multi_split else None,
                    "thumbnails": [thumb for row in examples for thumb in self.thumbnails(row)[:1]],
                }
            )
        return {"groups": shown, "num_groups": len(groups), "num_rows": sum(g.count for _, g in groups)}

    def failed(self, summary: Any) -> dict[str, Any]:
        """Failure reasons with their counts, and the first failed rows of each split with their reasons."""
        from difficulty_curation.stats import summarize

        rows = []
        for split, part in self.splits.items():
            found = summary.failed_rows if len(self.splits) == 1 else summarize(part).failed_rows
            rows += [(f"{split} {index}" if self.multi_split else index, redact(reason)) for index, reason in found]
        return {"count": summary.num_failed, "reasons": list(summary.failure_reasons.items()), "rows": rows}

    def comparison(self, second: Any, names: list[str]) -> dict[str, Any]:
        """The transition matrix between this run and `second`, and the rows that moved most (`compare_runs`)."""
        from difficulty_curation.compare import STATES, compare_runs

        if len(self.splits) != 1:
            raise ConfigError(f"the report holds several splits ({', '.join(self.splits)}); compare one: pass --split.")
        split, first = next(iter(self.splits.items()))
        result = compare_runs(
            [first, second],
            names=names if len(set(names)) == 2 else None,
            top=MAX_MOVED_ROWS,
            split=split,
        )
        moved = []
        indices = [item["index"][0] for item in result.moved]
        for item, row in zip(result.moved, first.select(indices)):
            shown = self.row(split, item["index"][0], row)
            shown["difficulties"] = [_text(value) if value is not None else "failed" for value in item["difficulty"]]
            shown["delta"] = f"{item['delta']:+.3f}"
            shown["majority"] = [_text(answer) for answer in item.get("majority_answer") or []]
            moved.append(shown)
        return {
            "names": list(result.names),
            "columns": list(STATES),
            "matrix": [
                {"from": source, "cells": [result.transitions[source][target] for target in STATES]}
                for source in STATES
            ],
            "matched": result.matched,
            "only_in": result.only_in,
            "bucket_changes": result.bucket_changes,
            "moved": moved,
        }


def _as_dataset_dict(splits: dict[str, Any]) -> DatasetDict:
    """A `DatasetDict` of `splits` (summaries and comparisons take one)."""
    from datasets import DatasetDict

    return splits if isinstance(splits, DatasetDict) else DatasetDict(splits)


def _is_truncated(finish: Any) -> bool:
    return finish is True or (isinstance(finish, str) and finish.lower() in ("length", "truncated"))


def _prompt_text(prompt: Any) -> str:
    """A prompt as text: a string as it is, chat messages as `role: text` lines (image parts as `[image]`)."""
    if isinstance(prompt, list):
        lines = []
        for message in prompt:
            if not isinstance(message, dict):
                lines.append(_text(message))
                continue
            content = message.get("content")
            if isinstance(content, list):
                parts = [
                    "[image]" if isinstance(part, dict) and part.get("type") == "image" else _part_text(part)
                    for part in content
                ]
                content = " ".join(parts)
            lines.append(f"{message.get('role', '?')}: {_text(content)}")
        return redact("\n".join(lines))
    return redact(_text(prompt))


def _part_text(part: Any) -> str:
    if isinstance(part, dict):
        return _text(part.get("text") or "")
    return _text(part)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_text(item) for item in value)
    return redact(value)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text) - limit} more characters)"


def _data_uri(image: Any, size: int) -> str:
    """A small PNG (for small or few-coloured images) or JPEG thumbnail as a `data:` URI."""
    from PIL import Image

    image = image.copy()
    image.thumbnail((size, size), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    if image.width * image.height <= 64 * 64:
        image.save(buffer, format="PNG", optimize=True)
        kind = "png"
    else:
        image.convert("RGB").save(buffer, format="JPEG", quality=80, optimize=True)
        kind = "jpeg"
    return f"data:image/{kind};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


def _histogram_svg(histogram: Sequence[tuple[float, int]], width: int = 560, height: int = 180) -> dict[str, Any]:
    """Bars for the template's inline SVG: one per distinct difficulty, coloured by bucket."""
    peak = max((count for _, count in histogram), default=1) or 1
    plot = width - 40
    bar = max(3.0, min(40.0, plot / max(len(histogram), 1) * 0.8))
    bars = []
    for value, count in histogram:
        bar_height = (height - 40) * count / peak
        bars.append(
            {
                "x": round(20 + value * (plot - bar), 1),
                "y": round(height - 20 - bar_height, 1),
                "width": round(bar, 1),
                "height": round(bar_height, 1),
                "bucket": bucket_of(value),
                "label": f"difficulty {value:g}: {count} rows",
                "count": count,
            }
        )
    return {"width": width, "height": height, "bars": bars}


def _write_atomic(out: Path, data: bytes) -> int:
    out.resolve().parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.resolve().parent)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(staging, out)
    finally:
        if os.path.exists(staging):
            os.unlink(staging)
    return len(data)


def _template() -> Any:
    import jinja2

    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True)
    return environment.from_string(TEMPLATE)


TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}: difficulty report</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1180px; padding: 16px 24px; color: #1d232a; }
h1 { font-size: 22px; } h2 { font-size: 18px; border-bottom: 1px solid #ddd; padding-bottom: 4px; margin-top: 32px; }
table { border-collapse: collapse; margin: 8px 0; } td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
code, pre { font: 12px/1.4 ui-monospace, monospace; } pre { white-space: pre-wrap; word-break: break-word; margin: 0; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(340px, 1fr)); gap: 12px; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 10px; background: #fafbfc; }
.thumbs { display: flex; gap: 6px; flex-wrap: wrap; }
.thumbs img { height: 96px; width: auto; border: 1px solid #ccc; background: #fff; } img.pixels { image-rendering: pixelated; }
.missing { font-size: 12px; color: #a33; border: 1px dashed #a33; padding: 4px; }
.meta { color: #555; font-size: 12px; } .label { font-weight: 600; }
.verdict { display: inline-block; min-width: 62px; font-size: 11px; font-weight: 600; text-align: center; border-radius: 3px; padding: 0 4px; color: #fff; }
.right { background: #2e7d32; } .wrong { background: #c62828; } .truncated { background: #ef6c00; }
.easy { fill: #4caf50; } .medium { fill: #1e88e5; } .hard { fill: #e53935; }
.rollout { border-top: 1px solid #e4e4e4; padding: 3px 0; }
details summary { cursor: pointer; color: #245; }
.top { display: flex; flex-wrap: wrap; gap: 0 48px; } .top section { flex: 1 1 420px; }
</style>
</head>
<body>
<h1>{{ title }}: what each bucket holds and why</h1>
<p class="meta">Made by difficulty-curation. Difficulty is the fraction of a row's rollouts judged wrong:
easy = 0, hard = 1, medium = in between. Rows below are a seeded sample of each bucket.</p>

<div class="top"><section>
<h2 id="settings">How it was scored</h2>
{% if settings.key %}
<table id="key-settings">
{% for key, value in settings.key %}<tr><th>{{ key }}</th><td><code>{{ value }}</code></td></tr>
{% endfor %}
</table>
<details><summary>every setting</summary>
<table>{% for key, value in settings.all %}<tr><th>{{ key }}</th><td><code>{{ value }}</code></td></tr>{% endfor %}</table>
</details>
{% else %}
<p>No provenance record: this dataset was not scored by difficulty-curation, or it lost its info.</p>
{% endif %}

</section><section>
<h2 id="buckets">Buckets</h2>
<table id="bucket-counts">
<tr><th>bucket</th><th>difficulty</th><th class="n">rows</th><th class="n">share</th></tr>
{% for bucket in buckets %}<tr><td><a href="#bucket-{{ bucket.name }}">{{ bucket.name }}</a></td><td>{{ bucket.range }}</td>
<td class="n" data-bucket="{{ bucket.name }}">{{ bucket.count }}</td><td class="n">{{ bucket.share }}</td></tr>
{% endfor %}
<tr><td>failed</td><td>no difficulty</td><td class="n" data-bucket="failed">{{ summary.num_failed }}</td><td></td></tr>
<tr><th>total</th><td></td><td class="n" data-bucket="total">{{ summary.num_rows }}</td><td></td></tr>
</table>
<svg id="histogram" role="img" aria-label="difficulty histogram" width="{{ histogram.width }}" height="{{ histogram.height }}">
<line x1="20" y1="{{ histogram.height - 20 }}" x2="{{ histogram.width - 20 }}" y2="{{ histogram.height - 20 }}" stroke="#888"/>
{% for bar in histogram.bars %}<rect class="{{ bar.bucket }}" x="{{ bar.x }}" y="{{ bar.y }}" width="{{ bar.width }}" height="{{ bar.height }}"><title>{{ bar.label }}</title></rect>
<text x="{{ bar.x }}" y="{{ bar.y - 3 }}" font-size="10">{{ bar.count }}</text>
{% endfor %}
<text x="20" y="{{ histogram.height - 4 }}" font-size="11">0 (easy)</text>
<text x="{{ histogram.width - 70 }}" y="{{ histogram.height - 4 }}" font-size="11">1 (hard)</text>
</svg>
</section></div>

{% for bucket in buckets %}
<h2 id="bucket-{{ bucket.name }}">{{ bucket.name }}: {{ bucket.rows | length }} of {{ bucket.count }} rows</h2>
{% if not bucket.rows %}<p>No rows in this bucket.</p>{% endif %}
<div class="cards">
{% for row in bucket.rows %}
<div class="card row" data-bucket="{{ bucket.name }}">
<div class="meta"><span class="label">{{ row.label }}</span> · difficulty <b>{{ row.difficulty }}</b>
{% if row.interval %} (interval {{ row.interval }}){% endif %}
{% if row.num_rollouts is not none %} · {{ row.num_correct }}/{{ row.num_rollouts }} right{% endif %}
{% if row.num_truncated is not none %} · {{ row.num_truncated }} truncated{% endif %}</div>
{% if row.thumbnails %}<div class="thumbs">{% for thumb in row.thumbnails %}{% if thumb.src %}<img class="{{ thumb.class }}" src="{{ thumb.src }}" alt="image ({{ thumb.size }})" title="{{ thumb.size }}">{% else %}<span class="missing">{{ thumb.missing }}</span>{% endif %}{% endfor %}</div>{% endif %}
<div><span class="label">prompt</span><pre class="prompt">{{ row.prompt }}</pre></div>
<div><span class="label">reference</span> <code class="reference">{{ row.reference }}</code></div>
{% if row.rollouts %}
<details{% if loop.index <= 3 %} open{% endif %}><summary>{{ row.rollouts | length }} rollouts</summary>
{% for rollout in row.rollouts %}<div class="rollout"><span class="verdict {{ rollout.verdict }}">{{ rollout.verdict }}</span>
{% if rollout.score is not none %}<span class="meta">score {{ rollout.score }} · answer</span> <code>{{ rollout.answer }}</code>{% endif %}
<pre>{{ rollout.text }}</pre></div>
{% endfor %}
</details>
{% endif %}
</div>
{% endfor %}
</div>
{% endfor %}

<h2 id="audit">Hard rows where the model agrees on another answer</h2>
{% if audit is none %}
<p>Needs kept rollouts: score with <code>--keep-rollouts</code> (<code>keep_rollouts=True</code>).</p>
{% elif not audit.groups %}
<p>No hard row's rollouts agree on one wrong answer.</p>
{% else %}
<p>{{ audit.num_rows }} hard rows in {{ audit.num_groups }} groups (reference → the answer most rollouts gave).
A large group is often a wrong label or a synonym the verifier does not know, not a hard example.</p>
<table id="audit-groups">
<tr><th>reference</th><th>majority answer</th><th class="n">rows</th><th class="n">agreement</th><th>examples</th><th>rows</th></tr>
{% for group in audit.groups %}<tr><td><code>{{ group.reference }}</code></td><td><code>{{ group.majority }}</code></td>
<td class="n">{{ group.count }}</td><td class="n">{{ group.agreement }}</td>
<td><div class="thumbs">{% for thumb in group.thumbnails %}{% if thumb.src %}<img class="{{ thumb.class }}" src="{{ thumb.src }}" alt="example">{% else %}<span class="missing">{{ thumb.missing }}</span>{% endif %}{% endfor %}</div></td>
<td class="meta">{% if group.split %}{{ group.split }}: {% endif %}{{ group.rows }}</td></tr>
{% endfor %}
</table>
{% endif %}

<h2 id="failed">Failed rows</h2>
{% if not failed.count %}
<p>Every row was scored.</p>
{% else %}
<p>{{ failed.count }} rows have no difficulty.</p>
<table id="failure-reasons"><tr><th>reason</th><th class="n">rows</th></tr>
{% for reason, count in failed.reasons %}<tr><td>{{ reason }}</td><td class="n">{{ count }}</td></tr>{% endfor %}
</table>
<table id="failed-rows"><tr><th>row</th><th>reason</th></tr>
{% for index, reason in failed.rows %}<tr><td>{{ index }}</td><td>{{ reason }}</td></tr>{% endfor %}
</table>
{% endif %}

{% if comparison %}
<h2 id="compare">{{ comparison.names[0] }} → {{ comparison.names[-1] }}</h2>
<p>{{ comparison.matched }} rows matched by content{% for name, count in comparison.only_in.items() %}; {{ count }} only in {{ name }}{% endfor %};
{{ comparison.bucket_changes }} changed bucket.
Rows: bucket in {{ comparison.names[0] }}; columns: bucket in {{ comparison.names[-1] }}.</p>
<table id="transitions"><tr><th></th>{% for name in comparison.columns %}<th class="n">{{ name }}</th>{% endfor %}</tr>
{% for line in comparison.matrix %}<tr><th>{{ line.from }}</th>{% for cell in line.cells %}<td class="n">{{ cell }}</td>{% endfor %}</tr>
{% endfor %}
</table>
{% if comparison.moved %}
<h3>Rows that moved most</h3>
<div class="cards" id="moved">
{% for row in comparison.moved %}
<div class="card moved">
<div class="meta"><span class="label">{{ row.label }}</span> · difficulty <b>{{ row.difficulties | join(" → ") }}</b> ({{ row.delta }})
{% if row.majority %} · majority answer {{ row.majority | join(" → ") }}{% endif %}</div>
{% if row.thumbnails %}<div class="thumbs">{% for thumb in row.thumbnails %}{% if thumb.src %}<img class="{{ thumb.class }}" src="{{ thumb.src }}" alt="image ({{ thumb.size }})">{% else %}<span class="missing">{{ thumb.missing }}</span>{% endif %}{% endfor %}</div>{% endif %}
<div><span class="label">prompt</span><pre class="prompt">{{ row.prompt }}</pre></div>
<div><span class="label">reference</span> <code class="reference">{{ row.reference }}</code></div>
</div>
{% endfor %}
</div>
{% endif %}
{% endif %}
</body>
</html>
"""
