"""Scored rows <-> TRL's conversational formats, for our recipes and for any trainer of your own."""

from __future__ import annotations

from typing import Any

from datasets import Dataset

from difficulty_curation.columns import Columns
from difficulty_curation.errors import ConfigError, RowError
from difficulty_curation.images import load_image
from difficulty_curation.prompts import build_messages


def to_trl_format(dataset: Dataset, *, style: str = "prompt-completion", columns: Columns = Columns()) -> Dataset:
    """Rows as TRL conversational data with an `images` column.

    - `style="prompt-completion"`: `prompt` (system + user turns) and `completion` (the assistant
      turn); TRL's `SFTTrainer` then computes the loss on the answer tokens only.
    - `style="messages"`: one `messages` list with the assistant turn last.

    The prompt is built by the same `build_messages` that scoring uses (chat-format prompts
    included), so training sees exactly the prompts that were scored. Other columns are dropped.
    `columns` says which columns hold the prompt, answer and images (`image_column=None`: text-only
    rows) and the system prompt.

    Raises:
        ColumnNotFoundError: a named column is missing.
        ConfigError: an unknown `style`, or a row whose prompt cannot be built (named by index).

    Example:
        >>> train = to_trl_format(filter_difficulty(scored, "medium"))  # doctest: +SKIP
        >>> SFTTrainer(model=..., train_dataset=train, processing_class=processor)  # doctest: +SKIP
    """
    if style not in ("prompt-completion", "messages"):
        raise ConfigError(f"style={style!r} is not known; choose 'prompt-completion' or 'messages'.")
    columns.check(dataset.column_names)

    def convert(row: dict[str, Any], index: int) -> dict[str, Any]:
        images = row[columns.image_column] if columns.image_column else []
        images = images if isinstance(images, list) else [images]
        try:
            prompt = build_messages(
                row[columns.prompt_column],
                num_images=len(images),
                system_prompt=columns.system_prompt,
                prompt_column=columns.prompt_column,
            )
            # the scoring decoder: a 16-bit or transparent image is trained on as it was scored
            images = [load_image(image, column=columns.image_column or "image") for image in images]
        except RowError as error:
            raise ConfigError(f"row {index}: {error}; fix or drop that row before training.") from None
        converted = trl_conversation(prompt, str(row[columns.answer_column]), style=style)
        return {**converted, "images": images}

    return dataset.map(convert, with_indices=True, remove_columns=dataset.column_names, desc="To TRL format")


def trl_conversation(
    messages: list[dict[str, Any]], answer: str, *, style: str = "prompt-completion"
) -> dict[str, list[dict[str, Any]]]:
    """One row in TRL's conversational format: the prompt messages and the answer as the assistant turn.

    Every content becomes TRL parts (`{"type": "image"}`, `{"type": "text", "text": ...}`); `style` as in
    `to_trl_format`. The one converter: `to_trl_format` and `export_trl` both use it.
    """
    prompt = [{"role": message["role"], "content": _trl_parts(message["content"])} for message in messages]
    completion = [{"role": "assistant", "content": [{"type": "text", "text": answer}]}]
    if style == "prompt-completion":
        return {"prompt": prompt, "completion": completion}
    return {"messages": prompt + completion}


def _trl_parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        content = [{"type": "text", "text": content}]
    return [
        {"type": "image"} if part.get("type") == "image" else {"type": "text", "text": part.get("text")}
        for part in content
    ]


def from_trl_format(dataset: Dataset, *, columns: Columns = Columns()) -> Dataset:
    """The inverse of `to_trl_format`: the prompt, answer and image columns `columns` names, again.

    With `columns.image_column=None` the images are left out (text-only rows).
    """

    def convert(row: dict[str, Any]) -> dict[str, Any]:
        turns = row["messages"] if "messages" in row else row["prompt"] + row["completion"]
        user = next(turn for turn in turns if turn["role"] == "user")
        answer = turns[-1]
        text = " ".join(part["text"] for part in user["content"] if part["type"] == "text")
        reply = " ".join(part["text"] for part in answer["content"] if part["type"] == "text")
        converted = {columns.prompt_column: text, columns.answer_column: reply}
        if columns.image_column is not None:
            images = row.get("images") or []
            converted[columns.image_column] = images[0] if len(images) == 1 else images
        return converted

    return dataset.map(convert, remove_columns=dataset.column_names, desc="From TRL format")
