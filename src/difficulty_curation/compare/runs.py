"""Scored runs as a comparison reads them: one split each, its provenance, a label, and row fingerprints.

Rows are matched by a fingerprint of their content (prompt, images, reference answer), never by position.
"""

from __future__ import annotations

import os
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict

from difficulty_curation.answers import extractor_for
from difficulty_curation.columns import Columns
from difficulty_curation.errors import ConfigError
from difficulty_curation.fingerprints import row_fingerprints
from difficulty_curation.provenance import read_provenance
from difficulty_curation.verifiers import normalize_label

RunLike = Dataset | DatasetDict | str | os.PathLike


@dataclass
class ScoredRun:
    """One scored run as the comparison reads it: its rows, provenance, name and row fingerprints."""

    name: str
    dataset: Dataset
    provenance: dict[str, Any]
    keys: list[str]
    where: str

    @property
    def difficulties(self) -> list[float | None]:
        """The run's difficulty per row (None for failed rows)."""
        return self.dataset.with_format("arrow")["difficulty"].to_pylist()


def load_runs(
    runs: Sequence[RunLike], *, names: Sequence[str] | None = None, split: str | None = None, role: str = "run"
) -> list[ScoredRun]:
    """Read scored runs with their provenance and row fingerprints; checks they can be compared."""
    if names is not None and len(names) != len(runs):
        raise ConfigError(f"got {len(names)} names for {len(runs)} runs; pass one name per run.")
    if names is not None and len(set(names)) != len(names):
        raise ConfigError(f"names must differ from each other, got {list(names)}.")
    for label in names or []:
        if not isinstance(label, str) or not label.strip() or label != label.strip():
            raise ConfigError(f"run name {label!r} is empty or starts or ends with spaces; pass a visible name.")
        if any(unicodedata.category(char) in ("Cc", "Cf") for char in label):
            raise ConfigError(f"run name {label!r} holds control characters; pass a printable name.")
    found = [_one_split(run, split, f"{role} {number}") for number, run in enumerate(runs, 1)]
    split_names = {name for _, _, name in found if name is not None}
    parts = [(part, where) for part, where, _ in found]
    if len(split_names) > 1:
        raise ConfigError(
            f"the {role}s are of different splits ({', '.join(sorted(split_names))}); compare runs of one split."
        )
    records = []
    for part, where in parts:
        provenance = read_provenance(part)
        if provenance is None:
            raise ConfigError(
                f"{where} has no scoring provenance (it was not scored by difficulty-curation, or it lost "
                "its info); pass the folders `curate score` wrote."
            )
        if "difficulty" not in part.column_names:
            raise ConfigError(f"{where} has no difficulty column; pass a scored dataset.")
        records.append(provenance)
    labels = list(names) if names is not None else run_names(records)
    return [
        ScoredRun(label, part, record, row_keys(part, record), where)
        for label, (part, where), record in zip(labels, parts, records)
    ]


def run_names(provenances: Sequence[dict[str, Any]]) -> list[str]:
    """One label per run: the model's last path part, plus the seed or k (then a number) where labels repeat."""
    labels = [Path(str(record.get("model") or "run").rstrip("/")).name or "run" for record in provenances]
    for extra in ("seed", "num_rollouts"):
        repeated = {label for label, n in Counter(labels).items() if n > 1}
        short = {"seed": "seed", "num_rollouts": "k"}[extra]
        labels = [
            f"{label} {short}={record.get(extra)}" if label in repeated else label
            for label, record in zip(labels, provenances)
        ]
    counts = Counter(labels)
    seen: Counter[str] = Counter()
    unique = []
    for label in labels:
        seen[label] += 1
        unique.append(f"{label} #{seen[label]}" if counts[label] > 1 else label)
    return unique


def row_keys(dataset: Dataset, provenance: dict[str, Any]) -> list[str]:
    """A fingerprint of each row's content: its prompt, images and reference answer (columns from the provenance).

    Values are hashed under their role (prompt, images, answer), not their column's name, so the same rows
    scored under renamed columns match. A row that occurs several times gets `#2`, `#3`... after its
    fingerprint, so duplicates pair in order.
    """
    scored_with = Columns.from_provenance(provenance)
    prompt, answer, image = scored_with.prompt_column, scored_with.answer_column, scored_with.image_column
    roles = {"prompt": prompt, "images": image, "answer": answer}
    roles = {role: name for role, name in roles.items() if name and name in dataset.column_names}
    if not roles:
        raise ConfigError(
            f"none of the columns the run's provenance names ({prompt}, {answer}) is in the dataset; "
            f"its columns: {', '.join(dataset.column_names)}. Pass the folders `curate score` wrote."
        )
    return row_fingerprints(dataset, roles)


def majority_answers(dataset: Dataset) -> list[str | None] | None:
    """Each row's most common normalised answer among its kept rollouts (None without `rollouts`).

    The answer is what the run's verifier judged: taken by the run's own answer extractor (its provenance).
    """
    if "rollouts" not in dataset.column_names:
        return None
    provenance = read_provenance(dataset) or {}
    extract = extractor_for(provenance.get("answer_extractor") or "auto", provenance.get("answer_pattern"))
    answers: list[str | None] = []
    for rollouts in dataset.with_format("arrow")["rollouts"].to_pylist():
        normalised = [normalize_label(extract(r) or "") for r in rollouts or []]
        answers.append(Counter(normalised).most_common(1)[0][0] if normalised else None)
    return answers


def _one_split(run: RunLike, split: str | None, label: str) -> tuple[Dataset, str, str | None]:
    """The run's one split, how messages name the run (its path, else its place in the list), the split's name."""
    from difficulty_curation.sources import load_source

    where = f"{label} ({str(run)!r})" if isinstance(run, (str, os.PathLike)) else label
    dataset = load_source(run, split=split) if isinstance(run, (str, os.PathLike)) else run
    if isinstance(dataset, DatasetDict):
        if split is not None:
            if split not in dataset:
                raise ConfigError(f"split {split!r} is not in {where}; available splits: {', '.join(dataset)}.")
            return dataset[split], where, split
        if len(dataset) != 1:
            raise ConfigError(f"{where} holds several splits ({', '.join(dataset)}); pick one with --split.")
        name = next(iter(dataset))
        return dataset[name], where, name
    return dataset, where, str(dataset.split) if dataset.split is not None else None


__all__ = ["RunLike", "ScoredRun", "load_runs", "majority_answers", "row_keys", "run_names"]
