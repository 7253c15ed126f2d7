"""What the report page shows, gathered from one scored dataset: settings, buckets, sampled rows, audit, failures.

Only the sampled rows are read and decoded (`select`), so a large dataset is gathered in seconds.
Every text is redacted and clipped here (`_text`); the template escapes it, and `html_text` (the
template's `finalize`) replaces the characters HTML may not hold.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from difficulty_curation.answers import extractor_for
from difficulty_curation.buckets import PAPER_BUCKET_RANGES, PAPER_BUCKETS, bucket_of
from difficulty_curation.columns import Columns
from difficulty_curation.config import ScoringConfig
from difficulty_curation.errors import ConfigError
from difficulty_curation.provenance import per_run_settings, read_provenance
from difficulty_curation.redact import redact

if TYPE_CHECKING:
    from datasets import DatasetDict

#: Images shown per row, rollout text shown per rollout, prompt text shown per row.
MAX_IMAGES_PER_ROW = 4
MAX_ROLLOUT_CHARS = 1_500
MAX_PROMPT_CHARS = 3_000
#: Any other text (references, answers, reasons, settings): longer ones end in "… (N more characters)".
MAX_TEXT_CHARS = 1_000
MAX_ANSWER_CHARS = 200
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


class ReportPage:
    """Everything the template shows, read from one scored dataset."""

    def __init__(self, splits: DatasetDict, *, thumbnail_size: int) -> None:
        from difficulty_curation.schema import undecoded_images

        self.provenance = read_provenance(splits) or {}
        scored_with = Columns.from_provenance(self.provenance)
        self.threshold = float(self.provenance.get("correct_threshold", ScoringConfig.correct_threshold))
        #: the answer the run's verifier judged: the run's own extractor (`auto` for runs that name none)
        self.extract = extractor_for(
            self.provenance.get("answer_extractor") or "auto", self.provenance.get("answer_pattern")
        )
        names = set().union(*(part.column_names for part in splits.values()))
        image_column = scored_with.image_column if scored_with.image_column in names else None
        #: the columns shown: those the run scored, the image column only where the dataset still has it
        self.columns = dataclasses.replace(scored_with, image_column=image_column)
        self.splits = {name: undecoded_images(part, image_column) for name, part in splits.items()}
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
        record.update(per_run_settings(self.provenance))  # merged runs: each run's own value, never run 1's
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
            "prompt": _text(_prompt_text(row.get(self.columns.prompt_column)), MAX_PROMPT_CHARS),
            "reference": _text(row.get(self.columns.answer_column)),
            "difficulty": None if difficulty is None else f"{float(difficulty):.3f}",
            "interval": interval,
            "num_correct": row.get("num_correct"),
            "num_rollouts": row.get("num_rollouts"),
            "num_truncated": row.get("num_truncated"),
            "error": _text(row.get("difficulty_error")),
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
                    "text": _text(completion, MAX_ROLLOUT_CHARS),
                    "score": None if score is None else f"{float(score):.2f}",
                    "verdict": "truncated" if truncated else "right" if right else "wrong",
                    "answer": _text(answer, MAX_ANSWER_CHARS),
                }
            )
        return shown

    def thumbnails(self, row: dict[str, Any]) -> list[dict[str, str | None]]:
        """Up to `MAX_IMAGES_PER_ROW` embedded thumbnails, then a placeholder saying how many more the row has.

        A missing image, or one that cannot be decoded, is a placeholder that says why.
        """
        if self.columns.image_column is None:
            return []
        value = row.get(self.columns.image_column)
        cells = list(value) if isinstance(value, (list, tuple)) else [value]
        shown = [self.thumbnail(cell) for cell in cells[:MAX_IMAGES_PER_ROW]]
        if len(cells) > MAX_IMAGES_PER_ROW:
            more = len(cells) - MAX_IMAGES_PER_ROW
            shown.append(_placeholder(f"+{more} more image{'s' if more > 1 else ''} ({len(cells)} in all)"))
        return shown

    def thumbnail(self, cell: Any) -> dict[str, str | None]:
        """One embedded thumbnail (`src`), or a placeholder (`missing`) saying why there is none."""
        from difficulty_curation.errors import RowError
        from difficulty_curation.images import load_image

        if cell is None:
            return _placeholder("no image (None)")
        try:
            image = load_image(cell, column=self.columns.image_column or "image", max_pixels=None)
        except RowError as error:
            return _placeholder(_text(str(error)))
        self.num_thumbnails += 1
        small = max(image.size) <= 64  # shown enlarged: keep its pixels sharp
        return {
            "src": _data_uri(image, self.thumbnail_size),
            "size": f"{image.width}x{image.height}",
            "class": "pixels" if small else "photo",
            "missing": None,
        }

    def audit(self) -> dict[str, Any] | None:
        """The hard-row audit's clusters with example thumbnails; None without kept rollouts."""
        from difficulty_curation.audit import audit_hard_rows

        groups = []
        for split, part in self.splits.items():
            if "rollouts" not in part.column_names or self.columns.answer_column not in part.column_names:
                return None
            for group in audit_hard_rows(part, answer_column=self.columns.answer_column):
                groups.append((split, group))
        groups.sort(key=lambda item: -item[1].count)
        shown = []
        for split, group in groups[:MAX_AUDIT_GROUPS]:
            examples = self.splits[split].select(group.rows[:AUDIT_EXAMPLES])
            shown.append(
                {
                    "reference": _text(group.reference, MAX_ANSWER_CHARS),
                    "majority": _text(group.majority_answer, MAX_ANSWER_CHARS),
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
            rows += [(f"{split} {index}" if self.multi_split else index, _text(reason)) for index, reason in found]
        reasons = [(_text(reason), count) for reason, count in summary.failure_reasons.items()]
        return {"count": summary.num_failed, "reasons": reasons, "rows": rows}

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
            shown["majority"] = [_text(answer, MAX_ANSWER_CHARS) for answer in item.get("majority_answer") or []]
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
    if not isinstance(prompt, list):
        return _plain(prompt)
    lines = []
    for message in prompt:
        if not isinstance(message, dict):
            lines.append(_plain(message))
            continue
        content = message.get("content")
        if isinstance(content, list):
            parts = [
                "[image]" if isinstance(part, dict) and part.get("type") == "image" else _part_text(part)
                for part in content
            ]
            content = " ".join(parts)
        lines.append(f"{message.get('role', '?')}: {_plain(content)}")
    return "\n".join(lines)


def _part_text(part: Any) -> str:
    if isinstance(part, dict):
        return _plain(part.get("text") or "")
    return _plain(part)


def _text(value: Any, limit: int = MAX_TEXT_CHARS) -> str:
    """`value` as the page shows it: redacted, then clipped to `limit` characters (a list: its items joined)."""
    return _clip(redact(_plain(value)), limit)


def _plain(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_plain(item) for item in value)
    return str(value)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text) - limit} more characters)"


def _placeholder(reason: str) -> dict[str, str | None]:
    """A thumbnail's stand-in: the reason shown where the image would be."""
    return {"src": None, "size": None, "class": None, "missing": reason}


#: Characters HTML may not hold (C0 and C1 controls but tab and newline, DEL, surrogates, noncharacters),
#: and the bidi embeddings, overrides and isolates that would show a row's text in another order than
#: it holds ("7\u202e12" shown as "721") -> a visible stand-in: the Unicode control picture of a C0
#: control or DEL ("␀"), else U+FFFD.
_NOT_IN_HTML = {
    **dict.fromkeys((*range(0x202A, 0x202F), *range(0x2066, 0x206A)), 0xFFFD),
    **{code: 0x2400 + code for code in range(0x20) if chr(code) not in "\t\n"},
    0x7F: 0x2421,
    **dict.fromkeys(range(0x80, 0xA0), 0xFFFD),
    **dict.fromkeys(range(0xD800, 0xE000), 0xFFFD),
    **dict.fromkeys(range(0xFDD0, 0xFDF0), 0xFFFD),
    **dict.fromkeys((plane << 16 | low for plane in range(17) for low in (0xFFFE, 0xFFFF)), 0xFFFD),
}


def html_text(value: Any) -> Any:
    """A string made safe to put in the page's HTML (the template's `finalize`: every `{{ }}` passes here).

    Line endings become `\\n`; other characters HTML may not hold become visible stand-ins (`_NOT_IN_HTML`),
    so a NUL in a model's output shows as "␀". Anything but a string is returned as it is.
    """
    if not isinstance(value, str):
        return value
    return value.replace("\r\n", "\n").translate(_NOT_IN_HTML)


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


__all__ = ["KEY_SETTINGS", "ReportPage", "html_text"]
