"""The four formats: TRL, ms-swift, LLaMA-Factory and verl, each a writer of one data file per split."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict

from difficulty_curation.errors import ConfigError
from difficulty_curation.exports.folder import ExportResult, write_export
from difficulty_curation.exports.rows import ROW_INDEX, ExportRow, provenance_of
from difficulty_curation.recipes.formats import trl_conversation
from difficulty_curation.splits import as_splits

FORMATS = ("trl", "swift", "llamafactory", "verl")
IMAGE_DIR = "images"
IMAGE_PLACEHOLDER = "<image>"


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

    def write(folder: Path, split: str, rows: list[ExportRow], has_images: bool) -> str:
        from datasets import Image as ImageFeature
        from datasets import List

        def convert(position: int) -> dict[str, Any]:
            row = rows[position]
            record = trl_conversation(row.messages, row.answer)
            return record | (
                {"images": [{"bytes": data, "path": None} for data, _ in row.images]} if has_images else {}
            )

        # Built by `Dataset.map`, as `to_trl_format` builds it, so the inferred features are the same.
        positions = Dataset.from_dict({ROW_INDEX: list(range(len(rows)))})
        table = positions.map(convert, input_columns=[ROW_INDEX], remove_columns=[ROW_INDEX], desc="To TRL format")
        if has_images and rows:
            table = table.cast_column("images", List(ImageFeature()))
        name = f"{split}.parquet"
        table.to_parquet(str(folder / name))
        return name

    return write_export("trl", dataset, out, write, buckets=buckets, overwrite=overwrite)


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

    def write(folder: Path, split: str, rows: list[ExportRow], has_images: bool) -> str:
        name = f"{split}.jsonl"
        with open(folder / name, "w", encoding="utf-8") as file:
            for record in _chat_records(folder, rows, has_images):
                file.write(json.dumps(record, ensure_ascii=False) + "\n")
        return name

    return write_export("swift", dataset, out, write, buckets=buckets, overwrite=overwrite)


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

    def write(folder: Path, split: str, rows: list[ExportRow], has_images: bool) -> str:
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

    return write_export("llamafactory", dataset, out, write, buckets=buckets, overwrite=overwrite, dataset_name=name)


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

    def write(folder: Path, split: str, rows: list[ExportRow], has_images: bool) -> str:
        import pyarrow as pa
        import pyarrow.parquet as pq

        provenance = provenance_of(dataset)
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

    return write_export("verl", dataset, out, write, buckets=buckets, overwrite=overwrite)


def _text_of(content: Any) -> str:
    """A message's content as one string, `<image>` where each image goes."""
    if isinstance(content, str):
        return content
    return "".join(IMAGE_PLACEHOLDER if part.get("type") == "image" else part.get("text") or "" for part in content)


def _chat_records(folder: Path, rows: list[ExportRow], has_images: bool) -> Iterator[dict[str, Any]]:
    """`{"messages": [...], "images": [paths]}` per row, as ms-swift and LLaMA-Factory read them."""
    for row in rows:
        record: dict[str, Any] = {"messages": _placeholder_messages(row)}
        if has_images:
            record["images"] = _write_images(folder, row)
        yield record


def _placeholder_messages(row: ExportRow) -> list[dict[str, str]]:
    """The scored messages plus the answer, with string contents and `<image>` placeholders."""
    messages = [{"role": message["role"], "content": _text_of(message["content"])} for message in row.messages]
    return [*messages, {"role": "assistant", "content": row.answer}]


def _write_images(folder: Path, row: ExportRow) -> list[str]:
    """Write the row's images once under `images/`; returns their paths relative to `folder`."""
    (folder / IMAGE_DIR).mkdir(exist_ok=True)
    paths = []
    for position, (data, suffix) in enumerate(row.images):
        relative = f"{IMAGE_DIR}/{row.split}-{row.index:06d}-{position}.{suffix}"
        (folder / relative).write_bytes(data)
        paths.append(relative)
    return paths


__all__ = ["FORMATS", "export_dataset", "export_llamafactory", "export_swift", "export_trl", "export_verl"]
