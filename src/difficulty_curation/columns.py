"""Which columns of a row hold the prompt, the answer and the images, and the system prompt put before each prompt.

One `Columns` travels wherever rows become prompts: scoring (`ScoringConfig.columns`), the training
recipes and formats, exports and the report (`Columns.from_provenance`). Its fields are named as the
options of `score_difficulty` and `curate score` are, so an error names the argument as the caller wrote it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from difficulty_curation.errors import ColumnNotFoundError, ConfigError


@dataclass(frozen=True)
class Columns:
    """The columns rows are read from. The defaults are those of `ScoringConfig` (it reads them from here).

    `image_column=None` (or `"none"`, in any case, as `--image-column none` writes it) reads text-only rows.

    Example:
        >>> Columns(prompt_column="question", answer_column="answer", image_column="none")
        Columns(prompt_column='question', answer_column='answer', image_column=None, system_prompt=None)
    """

    prompt_column: str = "problem"
    answer_column: str = "solution"
    image_column: str | None = "image"
    system_prompt: str | None = None

    def __post_init__(self) -> None:
        for option in ("prompt_column", "answer_column"):
            value = getattr(self, option)
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{option} must be a column name, got {value!r}.")
        image = self.image_column
        if isinstance(image, str) and image.lower() == "none":
            object.__setattr__(self, "image_column", None)
        elif image is not None and (not isinstance(image, str) or not image):
            raise ConfigError(f"image_column must be a column name or None, got {image!r}.")
        if self.system_prompt is not None and not isinstance(self.system_prompt, str):
            raise ConfigError(f"system_prompt must be a string or None, got {self.system_prompt!r}.")

    @property
    def required(self) -> dict[str, str]:
        """Option name -> column name, for every column a row is read from (the image column only when set)."""
        columns = {"prompt_column": self.prompt_column, "answer_column": self.answer_column}
        if self.image_column is not None:
            columns["image_column"] = self.image_column
        return columns

    @property
    def names(self) -> list[str]:
        """The columns a row is read from, each once (`select_columns` takes them)."""
        return list(dict.fromkeys(self.required.values()))

    def check(self, column_names: Iterable[str]) -> None:
        """Raise `ColumnNotFoundError`, naming the option, if a column rows are read from is not in `column_names`."""
        available = list(column_names)
        for option, column in self.required.items():
            if column not in available:
                raise ColumnNotFoundError(option, column, available)

    @classmethod
    def from_provenance(cls, provenance: Mapping[str, Any]) -> Columns:
        """The columns and system prompt a dataset was scored with, from its provenance record.

        A key the record lacks takes the default; a recorded `image_column` of None stays None (text-only rows).
        """
        return cls(**{item.name: provenance[item.name] for item in dataclasses.fields(cls) if item.name in provenance})
