"""Training sets to a recipe: `mix` on a real scored run of the trained checkpoint."""

import json
from collections import Counter

import pytest
from datasets import load_from_disk
from typer.testing import CliRunner

from difficulty_curation.buckets import bucket_of
from difficulty_curation.cards import render_card
from difficulty_curation.cli import app
from difficulty_curation.compare import merge_scores, row_keys
from difficulty_curation.errors import ConfigError
from difficulty_curation.exports import export_dataset
from difficulty_curation.provenance import read_provenance
from difficulty_curation.transforms import mix, parse_ratio

runner = CliRunner()


@pytest.fixture(scope="module")
def after(scored_checkpoints):
    """The checkpoint after SFT: its rows are in all three buckets."""
    return load_from_disk(str(scored_checkpoints["after"]))


def _buckets(dataset):
    return Counter(bucket_of(v) for v in dataset["difficulty"][:])


def test_the_recipe_gives_exact_counts_per_bucket_without_replacement(after):
    available = _buckets(after)
    assert all(available[name] >= 2 for name in ("easy", "medium", "hard")), available
    drawn = mix(after, "hard=0.5,medium=0.25,easy=0.25", num_rows=8, seed=0)
    assert _buckets(drawn) == {"hard": 4, "medium": 2, "easy": 2}
    keys = row_keys(drawn, read_provenance(drawn))
    assert len(set(keys)) == 8  # no row drawn twice


def test_counts_that_do_not_divide_evenly_still_add_up_to_the_rows_asked_for(after):
    drawn = mix(after, {"hard": 0.34, "medium": 0.33, "easy": 0.33}, num_rows=7, seed=0)
    assert len(drawn) == 7 and sorted(_buckets(drawn).values()) == [2, 2, 3]


def test_curriculum_runs_easy_to_hard_and_shuffle_draws_the_same_rows_in_another_order(after):
    curriculum = mix(after, "hard=0.5,medium=0.25,easy=0.25", num_rows=8, seed=5)
    difficulties = curriculum["difficulty"][:]
    assert difficulties == sorted(difficulties)
    shuffled = mix(after, "hard=0.5,medium=0.25,easy=0.25", num_rows=8, seed=5, order="shuffle")
    assert sorted(shuffled["difficulty"][:]) == difficulties
    assert set(row_keys(shuffled, read_provenance(after))) == set(row_keys(curriculum, read_provenance(after)))


def test_the_same_seed_draws_the_same_rows_and_another_seed_breaks_ties_otherwise(after):
    first = mix(after, "hard=1", num_rows=4, seed=1)
    again = mix(after, "hard=1", num_rows=4, seed=1)
    assert first["image"][:] == again["image"][:]
    orders = {tuple(row_keys(mix(after, "hard=1", num_rows=4, seed=s), read_provenance(after))) for s in range(6)}
    assert len(orders) > 1  # every row is hard (a tie): the seed decides which and in what order


def test_a_shortfall_says_how_many_rows_each_bucket_has_unless_short_is_allowed(after):
    available = _buckets(after)
    with pytest.raises(ConfigError, match=f"medium needs 20, has {available['medium']}") as error:
        mix(after, "medium=1", num_rows=20)
    assert f"hard {available['hard']}" in str(error.value) and "--allow-short" in str(error.value)
    short = mix(after, "medium=1", num_rows=20, allow_short=True)
    assert len(short) == available["medium"]


@pytest.mark.parametrize(
    ("ratio", "message"),
    [
        ("medium=0.8,easy=0.4", "add up to 1.2, over 1"),
        ("", "names no bucket"),
        ("medium", "is not BUCKET=SHARE"),
        ("middling=1", "unknown bucket"),
        ("medium=1.5", r"must be in \(0, 1\]"),
        ("medium=0.5", "under 1"),
    ],
)
def test_a_bad_ratio_says_how_to_write_one(ratio, message):
    with pytest.raises(ConfigError, match=message):
        parse_ratio(ratio)


def test_rows_must_be_at_least_one_and_at_most_the_scored_rows(after):
    with pytest.raises(ConfigError, match="rows must be an integer >= 1"):
        mix(after, "easy=1", num_rows=0)
    with pytest.raises(ConfigError, match="more than the 24 scored rows"):
        mix(after, "easy=1", num_rows=25)


def test_the_recipe_goes_into_the_provenance_the_card_and_the_export(after, tmp_path):
    drawn = mix(after, "hard=0.5,medium=0.25,easy=0.25", num_rows=8, seed=2)
    recipe = read_provenance(drawn)["mix"]
    assert recipe["ratio"] == {"hard": 0.5, "medium": 0.25, "easy": 0.25} and recipe["seed"] == 2
    assert recipe["counts"] == {"hard": 4, "medium": 2, "easy": 2} and recipe["order"] == "curriculum"
    assert read_provenance(after).get("mix") is None  # the source is untouched
    card = str(render_card(drawn, "me/mix"))
    assert "## Training mix" in card and "hard 4" in card
    export_dataset(drawn, tmp_path / "trl", format="trl")
    assert "hard=0.5" in (tmp_path / "trl" / "README.md").read_text()


def test_curate_mix_saves_the_set_and_prints_the_recipe(scored_checkpoints, tmp_path):
    out = tmp_path / "mix"
    args = ["mix", str(scored_checkpoints["after"]), "--ratio", "hard=0.5,easy=0.5", "--rows", "4"]
    result = runner.invoke(app, [*args, "--seed", "3", "--out", str(out), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed["recipe"]["counts"] == {"hard": 2, "easy": 2} and printed["rows"] == 4
    saved = load_from_disk(str(out))
    assert read_provenance(saved)["mix"] == printed["recipe"]
    assert saved["difficulty"][:] == sorted(saved["difficulty"][:])
    table = runner.invoke(app, [*args, "--out", str(tmp_path / "mix2"), "--order", "shuffle"], catch_exceptions=False)
    assert "Drawn" in table.stdout and "order shuffle" in table.stdout


def test_mix_on_merged_scores_uses_the_chosen_models_buckets(scored_checkpoints):
    runs = [load_from_disk(str(scored_checkpoints[name])) for name in ("before", "after")]
    merged = merge_scores(runs, names=["before", "after"])
    drawn = mix(merged, "hard=1", num_rows=3, seed=0, model="after")
    assert all(row["after"] == 1.0 for row in drawn["difficulty_by_model"][:])
    assert read_provenance(drawn)["mix"]["model"] == "after"
