import json

import pytest
from datasets import Dataset, DatasetDict
from typer.testing import CliRunner

from difficulty_curation import ConfigError
from difficulty_curation.audit import audit_hard_rows
from difficulty_curation.cli import app


@pytest.fixture()
def scored() -> Dataset:
    return Dataset.from_dict(
        {
            "solution": ["tench", "tench", "tabby", "goldfish", "tench", "dog"],
            "difficulty": [1.0, 1.0, 1.0, 1.0, 0.5, 1.0],
            "rollouts": [
                ["Carp.", "carp", "carp", "tench fish"],  # 3 of 4 say carp
                ["carp", "Carp", "carp", "carp"],  # all say carp
                ["tiger cat", "tiger cat", "Tiger Cat", "kitten"],
                ["shark", "whale", "koi", "eel"],  # no agreement: genuinely hard
                ["carp", "tench", "carp", "tench"],  # medium, not audited
                ["<answer>puppy</answer>", "puppy", "wolf", "wolf"],  # a tie at 2 of 4
            ],
        }
    )


def test_hard_rows_agreeing_on_another_answer_are_grouped(scored):
    groups = audit_hard_rows(scored, min_agreement=0.5)
    assert [(g.reference, g.majority_answer, g.rows) for g in groups] == [
        ("tench", "carp", [0, 1]),
        ("dog", "puppy", [5]),
        ("tabby", "tiger cat", [2]),
    ]
    assert groups[0].agreement == pytest.approx((0.75 + 1.0) / 2)


def test_a_higher_agreement_bar_keeps_only_clear_cases(scored):
    groups = audit_hard_rows(scored, min_agreement=0.75)
    assert [(g.reference, g.majority_answer, g.count) for g in groups] == [
        ("tench", "carp", 2),
        ("tabby", "tiger cat", 1),
    ]


def test_the_audit_needs_kept_rollouts_and_one_split(scored):
    with pytest.raises(ConfigError, match="keep_rollouts=True"):
        audit_hard_rows(scored.remove_columns("rollouts"))
    with pytest.raises(ConfigError, match="one split at a time"):
        audit_hard_rows(DatasetDict(train=scored))
    with pytest.raises(ConfigError, match="min_agreement"):
        audit_hard_rows(scored, min_agreement=0)


def test_curate_audit_prints_the_groups(scored, tmp_path):
    scored.save_to_disk(str(tmp_path / "scored"))
    result = CliRunner().invoke(app, ["audit", str(tmp_path / "scored"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0] == {
        "reference": "tench",
        "majority_answer": "carp",
        "rows": [0, 1],
        "agreement": 0.875,
        "models": 1,
        "count": 2,
    }
    table = CliRunner().invoke(app, ["audit", str(tmp_path / "scored")]).stdout
    assert "tiger cat" in table and "4 hard rows in 3 groups." in table
