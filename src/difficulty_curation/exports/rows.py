"""The rows an export writes, read once for every format: the scored prompt, the answer and the image bytes.

The columns and system prompt come from the dataset's provenance, so every trainer sees the prompt
that was scored (`prompts.build_request`); a row that cannot be built is skipped with its reason.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict
from PIL import Image

from difficulty_curation.columns import Columns
from difficulty_curation.errors import CurationError, RowError
from difficulty_curation.images import is_plain_8bit
from difficulty_curation.prompts import build_request, row_reference

#: The column that carries each row's index in its split through the bucket filter.
ROW_INDEX = "__curate_row_index__"
IMAGE_SUFFIXES = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "GIF": "gif", "BMP": "bmp"}


@dataclass
class ExportRow:
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


def provenance_of(dataset: Dataset | DatasetDict) -> dict[str, Any]:
    """The dataset's scoring provenance; `CurationError` when it has none."""
    from difficulty_curation.provenance import read_provenance

    provenance = read_provenance(dataset)
    if provenance is None:
        raise CurationError(
            "the dataset has no scoring provenance (it was not scored by difficulty-curation, or it lost its "
            "info); score it with `curate score` and export the scored folder (or `curate filter` output)."
        )
    return provenance


def select_rows(dataset: Dataset, buckets: str | Sequence[str] | None) -> Dataset:
    """Rows in `buckets` (all scored rows when None), each with its index in `dataset`."""
    from difficulty_curation.transforms import filter_difficulty

    indexed = dataset.add_column(ROW_INDEX, list(range(len(dataset))))
    return filter_difficulty(indexed, buckets)


def read_rows(
    dataset: Dataset, split: str, columns: Columns, skipped: list[tuple[str, int, str]]
) -> Iterator[ExportRow]:
    """Each row as an `ExportRow`, its images at full size; a row that cannot be built goes to `skipped` as
    (split, index, reason)."""
    from difficulty_curation.schema import undecoded_images

    columns.check(dataset.column_names)
    raw = undecoded_images(dataset, columns.image_column)
    for row in raw:
        index = row[ROW_INDEX]
        try:
            request = build_request(row, columns, max_pixels=None)
            reference = row_reference(row, columns)
            cells = row[columns.image_column] if columns.image_column else []
            cells = cells if isinstance(cells, list) else [cells]
            images = [image_bytes(cell, decoded) for cell, decoded in zip(cells, request.images, strict=True)]
        except RowError as error:
            skipped.append((split, index, str(error)))
            continue
        yield ExportRow(
            split=split,
            index=index,
            messages=request.messages,
            answer=answer_text(reference),
            ground_truth=list(map(str, reference)) if is_text_list(reference) else answer_text(reference),
            images=images,
            difficulty=row["difficulty"],
            num_correct=row.get("num_correct"),
            num_rollouts=row.get("num_rollouts"),
        )


def image_bytes(cell: Any, decoded: Image.Image) -> tuple[bytes, str]:
    """The image's original encoded bytes and file suffix, where every reader decodes them alike.

    Otherwise (a format we do not know, 16-bit, transparency, a palette, CMYK) the image the row was
    scored on (`decoded`, from `images.load_image`) is re-encoded as PNG, so a trainer sees those pixels.
    """
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
            suffix = IMAGE_SUFFIXES.get(image.format or "") if is_plain_8bit(image) else None
        if suffix:
            return data, suffix
    buffer = io.BytesIO()
    decoded.save(buffer, format="PNG")
    return buffer.getvalue(), "png"


def is_text_list(value: Any) -> bool:
    """Whether `value` is a list of strings (several accepted answers)."""
    return isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value)


def answer_text(reference: Any) -> str:
    """The assistant turn to train on: the reference, or the first of a list of accepted answers."""
    if isinstance(reference, str):
        return reference
    if is_text_list(reference):
        return reference[0]
    return json.dumps(reference)


__all__ = ["ROW_INDEX", "ExportRow", "answer_text", "provenance_of", "read_rows", "select_rows"]
