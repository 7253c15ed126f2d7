"""`mix` recipes reproduce: the draw depends on the recipe, the seed and the rows' content only. No model."""

import random

import pytest
from typer.testing import CliRunner

from difficulty_curation.cli import app
from difficulty_curation.errors import ConfigError
from difficulty_curation.provenance import read_provenance
from difficulty_curation.transforms import mix, parse_ratio
from tests.merged_data import scored_run

runner = CliRunner()


@pytest.fixture()
def scored():
    """60 rows: 20 easy, 20 medium, 20 hard."""
    return scored_run([0.0, 0.5, 1.0] * 20)


def test_the_same_recipe_in_another_key_order_draws_the_same_rows(scored):
    first = mix(scored, "medium=0.8,easy=0.2", num_rows=10, seed=0)
    second = mix(scored, "easy=0.2,medium=0.8", num_rows=10, seed=0)
    assert first["problem"][:] == second["problem"][:]
    assert read_provenance(first)["mix"] == read_provenance(second)["mix"]


def test_the_same_rows_in_another_order_draw_the_same_rows(scored):
    order = list(range(len(scored)))
    random.Random(7).shuffle(order)
    first = mix(scored, "medium=0.5,hard=0.5", num_rows=10, seed=3)
    second = mix(scored.select(order), "medium=0.5,hard=0.5", num_rows=10, seed=3)
    assert first["problem"][:] == second["problem"][:]


def test_duplicate_rows_are_drawn_as_rows_and_the_draw_still_reproduces():
    dataset = scored_run([0.0] * 6 + [1.0] * 4, problems=["same"] * 6 + ["h"] * 4)
    drawn = mix(dataset, "easy=0.5,hard=0.5", num_rows=8, seed=0)
    assert drawn["problem"][:].count("same") == 4 and len(drawn) == 8
    again = mix(dataset.select(list(reversed(range(10)))), "hard=0.5,easy=0.5", num_rows=8, seed=0)
    assert sorted(drawn["solution"][:]) == sorted(again["solution"][:])


def test_shares_within_tolerance_over_one_give_exactly_the_rows_asked_for():
    from difficulty_curation.transforms import recipe_counts  # on 10caefd: _exact_counts gave rows + 1 here

    shares = parse_ratio("easy=0.5000005,medium=0.5")
    assert sum(recipe_counts(shares, 2_000_000).values()) == 2_000_000
    assert recipe_counts({"easy": 1 / 3, "medium": 1 / 3, "hard": 1 / 3}, 10) == {"easy": 4, "hard": 3, "medium": 3}


def test_a_bucket_given_twice_is_refused():
    with pytest.raises(ConfigError, match="'medium' is given twice"):
        parse_ratio("medium=0.5,medium=0.5")


@pytest.mark.parametrize(
    ("options", "message"),
    [(["--seed", "-1"], "seed must be an integer >= 0"), (["--ratio", "easy=1,easy=1"], "given twice")],
)
def test_a_negative_seed_or_a_repeated_bucket_is_one_error_line(scored, tmp_path, options, message):
    scored.save_to_disk(str(tmp_path / "scored"))
    args = ["mix", str(tmp_path / "scored"), "--ratio", "easy=1", "--rows", "2", "--out", str(tmp_path / "m")]
    result = runner.invoke(app, [*args, *options])
    assert result.exit_code == 2, result.output
    assert result.output.count("Error:") == 1 and message in result.output


def test_a_one_row_dataset_mixes_and_an_empty_bucket_is_named(scored):
    one = scored_run([0.5])
    assert mix(one, "medium=1", num_rows=1)["problem"][:] == ["q0"]
    with pytest.raises(ConfigError, match="easy needs 1, has 0"):
        mix(one, "easy=0.5,medium=0.5", num_rows=1)
    with pytest.raises(ConfigError, match="no scored rows to draw from"):
        mix(scored_run([None, None]), "easy=1", num_rows=1)
