"""Curated rows -> the files other trainers read: TRL, ms-swift, LLaMA-Factory and verl.

Every format is built from the same row -> messages builder that scoring used
(`prompts.build_request`, with the columns and system prompt recorded in the dataset's provenance),
so every trainer sees the prompt that was scored. Each export is one folder that can be moved:
data files, images where the trainer reads image files (`images/`, paths relative to the folder),
and a README.md with the scoring provenance.

| format | data | images |
| --- | --- | --- |
| `trl` | `{split}.parquet`: `prompt`, `completion`, `images` (what `to_trl_format` gives) | embedded |
| `swift` | `{split}.jsonl`: `messages` with `<image>` placeholders, `images` paths | `images/` |
| `llamafactory` | `{split}.json` (ShareGPT style) + `dataset_info.json` | `images/` |
| `verl` | `{split}.parquet`: `data_source`, `prompt`, `images`, `ability`, `reward_model`, `extra_info` | embedded |
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict
from PIL import Image

from difficulty_curation.config import ScoringConfig
from difficulty_curation.errors import ColumnNotFoundError, ConfigError, CurationError, RowError
from difficulty_curation.outputs import check_output, write_aside
from difficulty_curation.prompts import build_request, row_reference
from difficulty_curation.redact import get_logger
from difficulty_curation.splits import as_splits

logger = get_logger(__name__)

FORMATS = ("trl", "swift", "llamafactory", "verl")
#: The file an export leaves in its folder, so `overwrite=True` only ever deletes an earlier export.
MARKER_FILE = ".curate-export.json"
IMAGE_DIR = "images"
IMAGE_PLACEHOLDER = "<image>"
_ROW_INDEX = "__curate_row_index__"
_IMAGE_SUFFIXES = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "GIF": "gif", "BMP": "bmp"}


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


@dataclass
class _Row:
    """One exportable row: the scored prompt as chat messages, its answer and its images as raw bytes."""

    split: str
    index: int
    messages: list[dict[str, Any]]
    answer: str
    ground_truth: str | list[str]
    images: list[tuple[bytes, str]]
    difficulty: float
    num_correct: int | None
    num_rollouts: int | None


def export_dataset(
    dataset: Dataset | DatasetDict,
    out: str | Path,
    *,
    format: str,
    buckets: str | Sequence[str] | None = None,
    overwrite: bool = False,
) -> ExportResult:
    """Export a scored dataset for the trainer named by `format` (`trl`, `swift`, `llamafactory` or `verl`).

    Args:
        dataset: A dataset scored by difficulty-curation (it carries its provenance), or a split dict.
        out: The export folder. A folder that exists and is not empty is refused unless `overwrite`.
        format: Which trainer's layout to write.
        buckets: Keep only these paper buckets (`easy`, `medium`, `hard`), as `filter_difficulty` does.
        overwrite: Replace an earlier export in `out`.

    Returns:
        An `ExportResult` with the files written and the counts.

    Raises:
        ConfigError: unknown format or bucket, or `out` exists.
        CurationError: the dataset has no scoring provenance.

    Example:
        >>> export_dataset(scored, "sft-m-swift/", format="swift", buckets="medium")  # doctest: +SKIP
    """
    exporters: dict[str, Callable[..., ExportResult]] = {
        "trl": export_trl,
        "swift": export_swift,
        "llamafactory": export_llamafactory,
        "verl": export_verl,
    }
    if format not in exporters:
        raise ConfigError(f"format={format!r} is not known; choose one of: {', '.join(FORMATS)}.")
    return exporters[format](dataset, out, buckets=buckets, overwrite=overwrite)


def export_trl(
    dataset: Dataset | DatasetDict,
    out: str | Path,
    *,
    buckets: str | Sequence[str] | None = None,
    overwrite: bool = False,
) -> ExportResult:
    """TRL conversational data, as `to_trl_format` gives it, saved as `{split}.parquet` with embedded images.

    Load it with `datasets.load_dataset("parquet", data_files="OUT/train.parquet")` and pass it to
    `SFTTrainer`: `prompt` (system + user turns), `completion` (the answer) and `images`.
    """

    def write(folder: Path, split: str, rows: list[_Row], has_images: bool) -> str:
        from datasets import Image as ImageFeature
        from datasets import List

        def convert(position: int) -> dict[str, Any]:
            row = rows[position]
            record = {
                "prompt": [_parts_message(message) for message in row.messages],
                "completion": [{"role": "assistant", "content": [{"type": "text", "text": row.answer}]}],
            }
            return record | (
                {"images": [{"bytes": data, "path": None} for data, _ in row.images]} if has_images else {}
            )

        # Built by `Dataset.map`, as `to_trl_format` builds it, so the inferred features are the same.
        positions = Dataset.from_dict({_ROW_INDEX: list(range(len(rows)))})
        table = positions.map(convert, input_columns=[_ROW_INDEX], remove_columns=[_ROW_INDEX], desc="To TRL format")
        if has_images and rows:
            table = table.cast_column("images", List(ImageFeature()))
        name = f"{split}.parquet"
        table.to_parquet(str(folder / name))
        return name

    return _export("trl", dataset, out, write, buckets=buckets, overwrite=overwrite)


def export_swift(
    dataset: Dataset | DatasetDict,
    out: str | Path,
    *,
    buckets: str | Sequence[str] | None = None,
    overwrite: bool = False,
) -> ExportResult:
    """ms-swift's JSONL: `messages` with one `<image>` per image, and `images` paths beside it.

    Image paths are relative to the export folder: run `swift sft --dataset OUT/train.jsonl` from
    inside OUT, or set `ROOT_IMAGE_DIR=OUT` (ms-swift resolves relative image paths against it).
    """

    def write(folder: Path, split: str, rows: list[_Row], has_images: bool) -> str:
        name = f"{split}.jsonl"
        with open(folder / name, "w", encoding="utf-8") as file:
            for record in _chat_records(folder, rows, has_images):
                file.write(json.dumps(record, ensure_ascii=False) + "\n")
        return name

    return _export("swift", dataset, out, write, buckets=buckets, overwrite=overwrite)


def export_llamafactory(
    dataset: Dataset | DatasetDict,
    out: str | Path,
    *,
    buckets: str | Sequence[str] | None = None,
    overwrite: bool = False,
    name: str = "curated",
) -> ExportResult:
    """LLaMA-Factory's ShareGPT-style JSON with `images`, and the `dataset_info.json` that registers it.

    Use it with `dataset_dir: OUT` and `dataset: NAME` in a LLaMA-Factory config; the train split (or,
    without one, the first split) is registered as `NAME`, any other split as `NAME_SPLIT`. Image paths are relative to OUT, which is
    LLaMA-Factory's default `media_dir`.
    """
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ConfigError(f"name={name!r} must be letters, digits, '_', '.' or '-' (it names the dataset).")
    entries: dict[str, Any] = {}
    names = list(as_splits(dataset))
    primary = "train" if "train" in names else names[0]  # the README's `dataset: NAME` must be registered

    def write(folder: Path, split: str, rows: list[_Row], has_images: bool) -> str:
        file_name = f"{split}.json"
        records = list(_chat_records(folder, rows, has_images))
        (folder / file_name).write_text(json.dumps(records, ensure_ascii=False, indent=1), encoding="utf-8")
        columns = {"messages": "messages", **({"images": "images"} if has_images else {})}
        entries[name if split == primary else f"{name}_{split}"] = {
            "file_name": file_name,
            "formatting": "sharegpt",
            "columns": columns,
            "tags": {
                "role_tag": "role",
                "content_tag": "content",
                "user_tag": "user",
                "assistant_tag": "assistant",
                "system_tag": "system",
            },
        }
        (folder / "dataset_info.json").write_text(json.dumps(entries, indent=2), encoding="utf-8")
        return file_name

    return _export("llamafactory", dataset, out, write, buckets=buckets, overwrite=overwrite, dataset_name=name)


def export_verl(
    dataset: Dataset | DatasetDict,
    out: str | Path,
    *,
    buckets: str | Sequence[str] | None = None,
    overwrite: bool = False,
    data_source: str | None = None,
) -> ExportResult:
    """verl's RL parquet (`RLHFDataset`): one `{split}.parquet` with images embedded as bytes.

    Columns: `data_source` (default: the scored source, else `difficulty-curation`), `prompt` (chat
    messages without the answer, `<image>` placeholders), `images` (`{bytes, path}`), `ability` (the
    verifier that judged the rollouts), `reward_model` (`{"style": "rule", "ground_truth": ...}`) and
    `extra_info` (`index`, `split`, `difficulty`, `num_correct`, `num_rollouts`).
    """

    def write(folder: Path, split: str, rows: list[_Row], has_images: bool) -> str:
        import pyarrow as pa
        import pyarrow.parquet as pq

        provenance = _provenance_of(dataset)
        source = data_source or provenance.get("source") or "difficulty-curation"
        records = []
        for row in rows:
            record: dict[str, Any] = {
                "data_source": source,
                "prompt": _placeholder_messages(row)[:-1],
                "ability": provenance.get("verifier") or "exact",
                "reward_model": {"style": "rule", "ground_truth": row.ground_truth},
                "extra_info": {
                    "index": row.index,
                    "split": split,
                    "difficulty": row.difficulty,
                    "num_correct": row.num_correct,
                    "num_rollouts": row.num_rollouts,
                },
            }
            if has_images:
                record["images"] = [{"bytes": data, "path": None} for data, _ in row.images]
            records.append(record)
        name = f"{split}.parquet"
        pq.write_table(pa.Table.from_pylist(records), folder / name)
        return name

    return _export("verl", dataset, out, write, buckets=buckets, overwrite=overwrite)


# --- shared machinery ------------------------------------------------------------------------------


def _export(
    format: str,
    dataset: Dataset | DatasetDict,
    out: str | Path,
    write: Callable[[Path, str, list[_Row], bool], str],
    *,
    buckets: str | Sequence[str] | None,
    overwrite: bool,
    dataset_name: str = "curated",
) -> ExportResult:
    provenance = _provenance_of(dataset)
    config = _scoring_config(provenance)
    out = check_output(out, overwrite=overwrite, earlier=(MARKER_FILE,))
    splits = as_splits(dataset)
    selected = {split: _select(part, buckets) for split, part in splits.items()}
    if not any(len(part) for part in selected.values()):
        named = buckets if isinstance(buckets, str) else ", ".join(buckets or ())
        which = f"in bucket(s) {named}" if buckets else "with a difficulty (every row failed to score)"
        raise ConfigError(f"no rows to export: the dataset has none {which}; pass other --bucket values or rows.")
    with write_aside(out, overwrite=overwrite, earlier=(MARKER_FILE,)) as staging:
        files, counts, skipped, num_images = [], {}, [], 0
        for split, part in selected.items():
            rows = list(_rows(part, split, config, skipped))
            files.append(write(staging, split, rows, config.image_column is not None))
            counts[split] = len(rows)
            num_images += sum(len(row.images) for row in rows)
        result = ExportResult(format, out, files, sum(counts.values()), num_images, skipped)
        (staging / "README.md").write_text(
            _readme(result, counts, provenance, buckets, dataset_name=dataset_name), encoding="utf-8"
        )
        (staging / MARKER_FILE).write_text(json.dumps(result.to_dict() | {"out": None}, indent=2), encoding="utf-8")
    for split, index, reason in skipped:
        logger.warning("row %d of split %r was not exported: %s", index, split, reason)
    return result


def _provenance_of(dataset: Dataset | DatasetDict) -> dict[str, Any]:
    from difficulty_curation.provenance import read_provenance

    provenance = read_provenance(dataset)
    if provenance is None:
        raise CurationError(
            "the dataset has no scoring provenance (it was not scored by difficulty-curation, or it lost its "
            "info); score it with `curate score` and export the scored folder (or `curate filter` output)."
        )
    return provenance


def _scoring_config(provenance: dict[str, Any]) -> ScoringConfig:
    """The columns and system prompt the rows were scored with; images are exported at full size."""
    return ScoringConfig(
        model=provenance.get("model") or "unknown",
        prompt_column=provenance.get("prompt_column") or ScoringConfig.prompt_column,
        answer_column=provenance.get("answer_column") or ScoringConfig.answer_column,
        image_column=provenance.get("image_column"),
        system_prompt=provenance.get("system_prompt"),
        max_pixels=None,
    )


def _select(dataset: Dataset, buckets: str | Sequence[str] | None) -> Dataset:
    """Rows in `buckets` (all scored rows when None), each with its index in `dataset`."""
    from difficulty_curation.transforms import filter_difficulty

    indexed = dataset.add_column(_ROW_INDEX, list(range(len(dataset))))
    return filter_difficulty(indexed, buckets)


def _rows(dataset: Dataset, split: str, config: ScoringConfig, skipped: list[tuple[str, int, str]]) -> Iterator[_Row]:
    from difficulty_curation.schema import undecoded_images

    for option, column in config.required_columns.items():
        if column not in dataset.column_names:
            raise ColumnNotFoundError(option, column, dataset.column_names)
    raw = undecoded_images(dataset, config.image_column)
    for row in raw:
        index = row[_ROW_INDEX]
        try:
            request = build_request(row, config)
            reference = row_reference(row, config)
            cells = row[config.image_column] if config.image_column else []
            cells = cells if isinstance(cells, list) else [cells]
            images = [_image_bytes(cell, decoded) for cell, decoded in zip(cells, request.images, strict=True)]
        except RowError as error:
            skipped.append((split, index, str(error)))
            continue
        yield _Row(
            split=split,
            index=index,
            messages=request.messages,
            answer=_answer_text(reference),
            ground_truth=list(map(str, reference)) if _is_text_list(reference) else _answer_text(reference),
            images=images,
            difficulty=row["difficulty"],
            num_correct=row.get("num_correct"),
            num_rollouts=row.get("num_rollouts"),
        )


def _image_bytes(cell: Any, decoded: Image.Image) -> tuple[bytes, str]:
    """The image's original encoded bytes and file suffix; re-encoded as PNG when it has none we know."""
    data = None
    if isinstance(cell, dict):
        data = cell.get("bytes")
        if not data and cell.get("path"):
            data = Path(cell["path"]).read_bytes()
    elif isinstance(cell, (bytes, bytearray)):
        data = bytes(cell)
    elif isinstance(cell, str):
        data = Path(cell).read_bytes()
    if data:
        with Image.open(io.BytesIO(data)) as image:
            suffix = _IMAGE_SUFFIXES.get(image.format or "")
        if suffix:
            return data, suffix
    buffer = io.BytesIO()
    decoded.save(buffer, format="PNG")
    return buffer.getvalue(), "png"


def _is_text_list(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value)


def _answer_text(reference: Any) -> str:
    """The assistant turn to train on: the reference, or the first of a list of accepted answers."""
    if isinstance(reference, str):
        return reference
    if _is_text_list(reference):
        return reference[0]
    return json.dumps(reference)


def _text_of(content: Any) -> str:
    """A message's content as one string, `<image>` where each image goes."""
    if isinstance(content, str):
        return content
    return "".join(IMAGE_PLACEHOLDER if part.get("type") == "image" else part.get("text") or "" for part in content)


def _chat_records(folder: Path, rows: list[_Row], has_images: bool) -> Iterator[dict[str, Any]]:
    """`{"messages": [...], "images": [paths]}` per row, as ms-swift and LLaMA-Factory read them."""
    for row in rows:
        record: dict[str, Any] = {"messages": _placeholder_messages(row)}
        if has_images:
            record["images"] = _write_images(folder, row)
        yield record


def _placeholder_messages(row: _Row) -> list[dict[str, str]]:
    """The scored messages plus the answer, with string contents and `<image>` placeholders."""
    messages = [{"role": message["role"], "content": _text_of(message["content"])} for message in row.messages]
    return [*messages, {"role": "assistant", "content": row.answer}]


def _parts_message(message: dict[str, Any]) -> dict[str, Any]:
    """A message with TRL content parts (`{"type": "image"}`, `{"type": "text", "text": ...}`)."""
    content = message["content"]
    if isinstance(content, str):
        content = [{"type": "text", "text": content}]
    parts = [
        {"type": "image"} if part.get("type") == "image" else {"type": "text", "text": part.get("text")}
        for part in content
    ]
    return {"role": message["role"], "content": parts}


def _write_images(folder: Path, row: _Row) -> list[str]:
    """Write the row's images once under `images/`; returns their paths relative to `folder`."""
    (folder / IMAGE_DIR).mkdir(exist_ok=True)
    paths = []
    for position, (data, suffix) in enumerate(row.images):
        relative = f"{IMAGE_DIR}/{row.split}-{row.index:06d}-{position}.{suffix}"
        (folder / relative).write_bytes(data)
        paths.append(relative)
    return paths


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


def _readme(
    result: ExportResult,
    counts: dict[str, int],
    provenance: dict[str, Any],
    buckets: str | Sequence[str] | None,
    *,
    dataset_name: str,
) -> str:
    from difficulty_curation.cards import _provenance_rows

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
        *(f"| {key} | {_cell(value)} |" for key, value in _provenance_rows(provenance)),
        "",
    ]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    """A value as one markdown table cell."""
    return " ".join(str(value).split()).replace("|", "\\|")


__all__ = [
    "FORMATS",
    "ExportResult",
    "export_dataset",
    "export_llamafactory",
    "export_swift",
    "export_trl",
    "export_verl",
]
