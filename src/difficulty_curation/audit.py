"""Hard-row audit: "hard" is often a synonym or a wrong label, not a hard example.

Lists hard rows whose rollouts mostly agree on the same wrong answer, grouped by
(reference, majority answer), so labels can be fixed or synonyms added instead of data dropped.
On a dataset from `merge_scores`, it lists the rows every model gets wrong with the same majority
answer: the strongest label-noise signal.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from datasets import Dataset, DatasetDict

from difficulty_curation.answers import extractor_for
from difficulty_curation.compare import MAJORITY_COLUMN
from difficulty_curation.config import ScoringConfig
from difficulty_curation.errors import ColumnNotFoundError, ConfigError
from difficulty_curation.provenance import read_provenance
from difficulty_curation.splits import one_split_only
from difficulty_curation.transforms import MODEL_DIFFICULTY_COLUMN, model_names
from difficulty_curation.verifiers import normalize_label


@dataclass
class AuditGroup:
    """Hard rows that share a reference and the answer most of their rollouts gave instead."""

    reference: str
    majority_answer: str
    rows: list[int] = field(default_factory=list)
    #: mean share of rollouts that gave `majority_answer`, over the rows (1.0 on merged scores: every model gave it)
    agreement: float = 0.0
    #: how many models agree on `majority_answer` (more than 1 only on merged scores)
    models: int = 1

    @property
    def count(self) -> int:
        """Number of rows in the group."""
        return len(self.rows)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {**asdict(self), "count": self.count}


def audit_hard_rows(
    dataset: Dataset | DatasetDict,
    *,
    answer_column: str = ScoringConfig.answer_column,
    min_agreement: float = 0.5,
    answer_extractor: str | None = None,
    answer_pattern: str | None = None,
) -> list[AuditGroup]:
    """Group hard rows whose rollouts agree (share >= `min_agreement`) on one wrong answer.

    Needs the `rollouts` column (`keep_rollouts=True`). Rollouts are grouped by the answer the
    verifier judged: the one the run's answer extractor (from its provenance, unless
    `answer_extractor` / `answer_pattern` say otherwise) takes from them, after the `exact`
    verifier's normalisation; a rollout with no answer (say, an unclosed `<think>`) counts as "".
    Groups come most frequent first.

    Example:
        >>> for group in audit_hard_rows(scored)[:10]:  # doctest: +SKIP
        ...     print(group.reference, "->", group.majority_answer, group.count)
    """
    one_split_only(dataset, "audit one split at a time, e.g. audit_hard_rows(scored['train']).")
    if not 0 < min_agreement <= 1:
        raise ConfigError(f"min_agreement must be in (0, 1], got {min_agreement!r}.")
    if MODEL_DIFFICULTY_COLUMN in dataset.column_names:
        return _audit_merged(dataset, answer_column)
    for column in ("difficulty", "rollouts", answer_column):
        if column not in dataset.column_names:
            if column == "rollouts":
                raise ConfigError("the audit needs kept rollouts: score with keep_rollouts=True (--keep-rollouts).")
            raise ColumnNotFoundError(
                "answer_column" if column == answer_column else column, column, dataset.column_names
            )
    extract = _extractor(dataset, answer_extractor, answer_pattern)
    groups: dict[tuple[str, str], AuditGroup] = {}
    shares: dict[tuple[str, str], list[float]] = defaultdict(list)
    columns = dataset.select_columns(["difficulty", "rollouts", answer_column])
    for index, row in enumerate(columns):
        if row["difficulty"] != 1.0 or not row["rollouts"]:
            continue
        answers = [normalize_label(extract(rollout) or "") for rollout in row["rollouts"]]
        majority, votes = Counter(answers).most_common(1)[0]
        share = votes / len(answers)
        if not majority or share < min_agreement:
            continue
        key = (normalize_label(row[answer_column]), majority)
        groups.setdefault(key, AuditGroup(reference=key[0], majority_answer=majority)).rows.append(index)
        shares[key].append(share)
    for key, group in groups.items():
        group.agreement = round(sum(shares[key]) / len(shares[key]), 4)
    return sorted(groups.values(), key=lambda g: (-g.count, g.reference, g.majority_answer))


def _extractor(dataset: Dataset, name: str | None, pattern: str | None) -> Callable[[str], str | None]:
    """The extractor asked for, else the one the dataset was scored with (its provenance), else `auto`."""
    if name is None and pattern is None:
        provenance = read_provenance(dataset) or {}
        name, pattern = provenance.get("answer_extractor"), provenance.get("answer_pattern")
    config = ScoringConfig(model="audit", answer_extractor=name or "auto", answer_pattern=pattern)  # checks both
    return extractor_for(config.answer_extractor, config.answer_pattern)


def _audit_merged(dataset: Dataset, answer_column: str) -> list[AuditGroup]:
    """Rows every model of a merged dataset finds hard, with one majority answer shared by all models."""
    if MAJORITY_COLUMN not in dataset.column_names:
        raise ConfigError(
            "the audit of merged scores needs each model's majority answers: score every run with "
            "--keep-rollouts, then merge them again."
        )
    if answer_column not in dataset.column_names:
        raise ColumnNotFoundError("answer_column", answer_column, dataset.column_names)
    names = model_names(dataset)
    groups: dict[tuple[str, str], AuditGroup] = {}
    columns = dataset.select_columns([MODEL_DIFFICULTY_COLUMN, MAJORITY_COLUMN, answer_column])
    for index, row in enumerate(columns):
        difficulties, answers = row[MODEL_DIFFICULTY_COLUMN], row[MAJORITY_COLUMN]
        if any(difficulties[name] != 1.0 for name in names):
            continue
        majority = {answers[name] for name in names}
        if len(majority) != 1 or not next(iter(majority)):
            continue
        key = (normalize_label(row[answer_column]), majority.pop())
        group = groups.setdefault(key, AuditGroup(reference=key[0], majority_answer=key[1], agreement=1.0))
        group.models = len(names)
        group.rows.append(index)
    return sorted(groups.values(), key=lambda g: (-g.count, g.reference, g.majority_answer))
