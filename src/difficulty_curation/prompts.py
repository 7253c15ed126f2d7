"""Dataset row -> chat request: the prompt, images and answer read from the columns a `Columns` names."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from difficulty_curation.columns import Columns
from difficulty_curation.errors import RowError
from difficulty_curation.images import load_image


@dataclass
class PromptRequest:
    """One row, ready for an engine: chat messages with image placeholders, and the images."""

    messages: list[dict[str, Any]]
    images: list[Image.Image] = field(default_factory=list)
    #: A hash of everything the engine sees; seeds sampling and keys caches.
    content_hash: str = ""


def build_request(row: Mapping[str, Any], columns: Columns, *, max_pixels: int | None) -> PromptRequest:
    """Turn one dataset row into a `PromptRequest`, or raise `RowError` naming the bad column.

    Images larger than `max_pixels` are downscaled (None: kept at full size).
    """
    images = _row_images(row, columns.image_column, max_pixels)
    messages = build_messages(
        row.get(columns.prompt_column),
        num_images=len(images),
        system_prompt=columns.system_prompt,
        prompt_column=columns.prompt_column,
    )
    return PromptRequest(messages=messages, images=images, content_hash=_content_hash(messages, images))


def row_reference(row: Mapping[str, Any], columns: Columns) -> Any:
    """The row's ground-truth answer, or `RowError` if it is missing or empty."""
    column = columns.answer_column
    reference = row.get(column)
    if reference is None:
        raise RowError(column, "answer is missing (None)")
    if isinstance(reference, float) and math.isnan(reference):
        raise RowError(column, "answer is missing (an empty cell, read as NaN)")
    if isinstance(reference, str) and not reference.strip():
        raise RowError(column, "answer is an empty string")
    if isinstance(reference, (list, tuple)) and len(reference) == 0:
        raise RowError(column, "answer is an empty list")
    return reference


def _row_images(row: Mapping[str, Any], column: str | None, max_pixels: int | None) -> list[Image.Image]:
    if column is None:
        return []
    value = row.get(column)
    if value is None:
        raise RowError(column, "image is missing (None)")
    cells = list(value) if isinstance(value, (list, tuple)) else [value]  # an empty list: a text-only row
    images = []
    for position, cell in enumerate(cells):
        if cell is None:
            raise RowError(column, f"image {position} of the list is missing (None)")
        images.append(load_image(cell, column=column, max_pixels=max_pixels))
    return images


def build_messages(
    prompt: Any,
    *,
    num_images: int,
    system_prompt: str | None = None,
    prompt_column: str = Columns.prompt_column,
) -> list[dict[str, Any]]:
    """A row's prompt (a string or chat messages) as the chat messages the model sees.

    The one row -> messages builder: scoring, the SFT/GRPO formats and every export use it, so a
    model is trained on exactly the prompts it was scored with. A string gets one `{"type": "image"}`
    part per image before its text; messages without image parts get them in the first user turn.

    Raises:
        RowError: the prompt is empty, of the wrong type, or its image parts do not match `num_images`.
    """
    column = prompt_column
    if isinstance(prompt, str):
        if not prompt.strip():
            raise RowError(column, "prompt is empty")
        content = [{"type": "image"} for _ in range(num_images)] + [{"type": "text", "text": prompt}]
        messages = [{"role": "user", "content": content}]
    elif _is_conversation(prompt):
        messages = [dict(message) for message in prompt]
        for position, message in enumerate(messages):
            content = message["content"]
            if not isinstance(content, str) and not (
                isinstance(content, Sequence) and all(isinstance(part, Mapping) for part in content)
            ):
                raise RowError(
                    column,
                    f"message {position} has content of type {type(content).__name__}; "
                    "expected a string or a list of {'type': ...} parts",
                )
        if not any(_message_text(message).strip() for message in messages):
            raise RowError(column, "prompt messages have no text")
        placeholders = sum(_count_images(message) for message in messages)
        if placeholders == 0 and num_images:
            first_user = next((m for m in messages if m["role"] == "user"), messages[0])
            first_user["content"] = [{"type": "image"} for _ in range(num_images)] + _as_parts(first_user["content"])
        elif placeholders != num_images:
            raise RowError(column, f"prompt has {placeholders} image placeholders but the row has {num_images} images")
    elif prompt is None:
        raise RowError(column, "prompt is missing (None)")
    else:
        raise RowError(column, f"prompt must be a string or a list of chat messages, got {type(prompt).__name__}")
    if system_prompt:
        messages = [{"role": "system", "content": [{"type": "text", "text": system_prompt}]}, *messages]
    return messages


def _is_conversation(value: Any) -> bool:
    return (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and len(value) > 0
        and all(isinstance(m, Mapping) and "role" in m and "content" in m for m in value)
    )


def _as_parts(content: Any) -> list[dict[str, Any]]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content)


def _message_text(message: Mapping[str, Any]) -> str:
    content = message["content"]
    if isinstance(content, str):
        return content
    return " ".join(part.get("text") or "" for part in content if isinstance(part, Mapping))


def _count_images(message: Mapping[str, Any]) -> int:
    content = message["content"]
    if isinstance(content, str):
        return 0
    return sum(1 for part in content if isinstance(part, Mapping) and part.get("type") == "image")


def _content_hash(messages: list[dict[str, Any]], images: list[Image.Image]) -> str:
    digest = hashlib.sha256(json.dumps(messages, sort_keys=True, default=str).encode())
    for image in images:
        digest.update(f"{image.mode}{image.size}".encode())
        digest.update(image.tobytes())
    return digest.hexdigest()
