"""Scored rows <-> TRL's conversational formats, for our recipes and for any trainer of your own."""

from __future__ import annotations

from typing import Any

from datasets import Dataset

from difficulty_curation.config import ScoringConfig
from difficulty_curation.errors import ColumnNotFoundError


def to_trl_format(
    dataset: Dataset,
    *,
    style: str = "prompt-completion",
    prompt_column: str = ScoringConfig.prompt_column,
    answer_column: str = ScoringConfig.answer_column,
    image_column: str | None = ScoringConfig.image_column,
    system_prompt: str | None = None,
) -> Dataset:
    """Rows as TRL conversational data with an `images` column.

    - `style="prompt-completion"`: `prompt` (system + user turns) and `completion` (the assistant
      turn); TRL's `SFTTrainer` then computes the loss on the answer tokens only.
    - `style="messages"`: one `messages` list with the assistant turn last.

    Image placeholders (`{"type": "image"}`) come first in the user turn, one per image, the way
    `score_difficulty` prompts the model. Other columns are dropped.

    Example:
        >>> train = to_trl_format(filter_difficulty(scored, "medium"))  # doctest: +SKIP
        >>> SFTTrainer(model=..., train_dataset=train, processing_class=processor)  # doctest: +SKIP
    """
    if style not in ("prompt-completion", "messages"):
        raise ValueError(f"style={style!r}; choose 'prompt-completion' or 'messages'")
    needed = {"prompt_column": prompt_column, "answer_column": answer_column}
    if image_column is not None:
        needed["image_column"] = image_column
    for option, column in needed.items():
        if column not in dataset.column_names:
            raise ColumnNotFoundError(option, column, dataset.column_names)

    def convert(row: dict[str, Any]) -> dict[str, Any]:
        images = row[image_column] if image_column else []
        images = images if isinstance(images, list) else [images]
        user = [{"type": "image"} for _ in images] + [{"type": "text", "text": row[prompt_column]}]
        prompt = [{"role": "system", "content": [{"type": "text", "text": system_prompt}]}] if system_prompt else []
        prompt.append({"role": "user", "content": user})
        completion = [{"role": "assistant", "content": [{"type": "text", "text": str(row[answer_column])}]}]
        converted = (
            {"prompt": prompt, "completion": completion}
            if style == "prompt-completion"
            else {"messages": prompt + completion}
        )
        return {**converted, "images": [image.convert("RGB") for image in images]}

    return dataset.map(convert, remove_columns=dataset.column_names, desc="To TRL format")


def from_trl_format(
    dataset: Dataset,
    *,
    prompt_column: str = ScoringConfig.prompt_column,
    answer_column: str = ScoringConfig.answer_column,
    image_column: str = ScoringConfig.image_column or "image",
) -> Dataset:
    """The inverse of `to_trl_format`: `problem` / `solution` / `image(s)` columns again."""

    def convert(row: dict[str, Any]) -> dict[str, Any]:
        turns = row["messages"] if "messages" in row else row["prompt"] + row["completion"]
        user = next(turn for turn in turns if turn["role"] == "user")
        answer = turns[-1]
        text = " ".join(part["text"] for part in user["content"] if part["type"] == "text")
        reply = " ".join(part["text"] for part in answer["content"] if part["type"] == "text")
        images = row.get("images") or []
        return {prompt_column: text, answer_column: reply, image_column: images[0] if len(images) == 1 else images}

    return dataset.map(convert, remove_columns=dataset.column_names, desc="From TRL format")
