"""One export folder: rows read once, one data file per split from the format's writer, a README and a marker.

The folder is written aside and moved into place (`outputs.write_aside`); the marker file lets
`overwrite=True` replace an earlier export and nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict

from difficulty_curation.columns import Columns
from difficulty_curation.errors import ConfigError
from difficulty_curation.exports.rows import ExportRow, provenance_of, read_rows, select_rows
from difficulty_curation.outputs import check_output, write_aside
from difficulty_curation.redact import get_logger
from difficulty_curation.splits import as_splits

logger = get_logger(__name__)

#: The file an export leaves in its folder, so `overwrite=True` only ever deletes an earlier export.
MARKER_FILE = ".curate-export.json"
#: A format's writer: (staging folder, split, rows, has images) -> the data file it wrote, relative to the folder.
Writer = Callable[[Path, str, list[ExportRow], bool], str]


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote: the folder, its data files (relative to it) and the row counts."""

    format: str
    out: Path
    files: list[str]
    num_rows: int
    num_images: int
    #: `(split, row index, reason)` for each row that could not be exported (the rest were).
    skipped: list[tuple[str, int, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready record (for `curate export --json`)."""
        return {
            "format": self.format,
            "out": str(self.out),
            "files": self.files,
            "num_rows": self.num_rows,
            "num_images": self.num_images,
            "skipped": [{"split": s, "row": r, "reason": reason} for s, r, reason in self.skipped],
        }


def write_export(
    format: str,
    dataset: Dataset | DatasetDict,
    out: str | Path,
    write: Writer,
    *,
    buckets: str | Sequence[str] | None,
    overwrite: bool,
    dataset_name: str = "curated",
) -> ExportResult:
    """Export `dataset`'s rows in `buckets` to `out` as `format`, one data file per split from `write`."""
    provenance = provenance_of(dataset)
    columns = Columns.from_provenance(provenance)
    out = check_output(out, overwrite=overwrite, earlier=(MARKER_FILE,))
    splits = as_splits(dataset)
    selected = {split: select_rows(part, buckets) for split, part in splits.items()}
    if not any(len(part) for part in selected.values()):
        named = buckets if isinstance(buckets, str) else ", ".join(buckets or ())
        total = sum(len(part) for part in splits.values())
        which = (
            f"in bucket(s) {named}"
            if buckets
            else "with a difficulty (every row failed to score)"
            if total
            else f"at all (splits: {', '.join(f'{name} 0 rows' for name in splits)})"
        )
        raise ConfigError(f"no rows to export: the dataset has none {which}; pass other --bucket values or rows.")
    with write_aside(out, overwrite=overwrite, earlier=(MARKER_FILE,)) as staging:
        files, counts, skipped, num_images = [], {}, [], 0
        for split, part in selected.items():
            rows = list(read_rows(part, split, columns, skipped))
            files.append(write(staging, split, rows, columns.image_column is not None))
            counts[split] = len(rows)
            num_images += sum(len(row.images) for row in rows)
        result = ExportResult(format, out, files, sum(counts.values()), num_images, skipped)
        (staging / "README.md").write_text(
            readme_text(result, counts, provenance, buckets, dataset_name=dataset_name), encoding="utf-8"
        )
        (staging / MARKER_FILE).write_text(json.dumps(result.to_dict() | {"out": None}, indent=2), encoding="utf-8")
    for split, index, reason in skipped:
        logger.warning("row %d of split %r was not exported: %s", index, split, reason)
    return result


_HOW_TO_TRAIN = {
    "trl": (
        "```python\nfrom datasets import load_dataset\n\n"
        'train = load_dataset("parquet", data_files="{first}")["train"]  # prompt, completion, images\n'
        "# SFTTrainer(model=..., train_dataset=train, processing_class=processor).train()\n```"
    ),
    "swift": (
        "Image paths are relative to this folder: run from here, or set `ROOT_IMAGE_DIR` to it.\n\n"
        "```bash\ncd {out_name} && swift sft --model Qwen/Qwen2.5-VL-7B-Instruct --dataset {first}\n```"
    ),
    "llamafactory": (
        "In your LLaMA-Factory config (image paths are relative to this folder, the default `media_dir`):\n\n"
        "```yaml\ndataset_dir: {out_name}\ndataset: {dataset_name}\n```"
    ),
    "verl": (
        "Images are embedded in the parquet; `reward_model.ground_truth` holds the reference answer.\n\n"
        "```bash\npython -m verl.trainer.main_ppo data.train_files={out_name}/{first} data.image_key=images ...\n```"
    ),
}


def readme_text(
    result: ExportResult,
    counts: dict[str, int],
    provenance: dict[str, Any],
    buckets: str | Sequence[str] | None,
    *,
    dataset_name: str,
) -> str:
    """The README.md of an export: what it holds, how to train on it, and the scores' provenance."""
    from difficulty_curation.cards import _provenance_rows, markdown_cell

    kept = (
        "all scored rows"
        if buckets is None
        else "buckets: " + ", ".join([buckets] if isinstance(buckets, str) else buckets)
    )
    lines = [
        f"# Curated by difficulty, exported for {result.format}",
        "",
        f"Exported by difficulty-curation (`curate export --format {result.format}`): {kept}.",
        "",
        "| split | file | rows |",
        "| --- | --- | ---: |",
        *(f"| {split} | `{name}` | {counts[split]} |" for split, name in zip(counts, result.files, strict=True)),
        "",
        f"{result.num_images} images. {len(result.skipped)} rows could not be exported.",
        "",
        "## How to train on it",
        "",
        _HOW_TO_TRAIN[result.format].format(first=result.files[0], out_name=result.out.name, dataset_name=dataset_name),
        "",
        "## Provenance of the difficulty scores",
        "",
        "| field | value |",
        "| --- | --- |",
        *(f"| {key} | {markdown_cell(value)} |" for key, value in _provenance_rows(provenance)),
        "",
    ]
    return "\n".join(lines)


__all__ = ["MARKER_FILE", "ExportResult", "Writer", "write_export"]
