"""Merged scores mean what they say: each run's columns and facts per run, `--model` selections carry that
run's difficulty, reserved names, missing rows. Runs written by hand (tests/merged_data.py): no model."""

import json

import pytest
from typer.testing import CliRunner

from difficulty_curation.cards import render_card
from difficulty_curation.cli import app
from difficulty_curation.compare import merge_scores
from difficulty_curation.errors import ConfigError
from difficulty_curation.provenance import read_provenance
from difficulty_curation.stats import summarize
from difficulty_curation.transforms import filter_difficulty, mix, stratify
from tests.merged_data import scored_run

runner = CliRunner()


@pytest.fixture()
def runs():
    """Run a (boxed extractor, nothing truncated) and run b (answer-is, 3 rollouts truncated, row 3 failed)."""
    a = scored_run([0.0, 1.0, 0.5, 1.0], model="org/m-a", answer_extractor="boxed")
    b = scored_run([1.0, 1.0, 0.0, None], model="org/m-b", answer_extractor="answer-is", truncated=[1, 2, 0, 0])
    return a, b


@pytest.fixture()
def merged(runs):
    return merge_scores(list(runs), names=["a", "b"])


@pytest.mark.parametrize("name", ["mean", "Mean", " mean"])
def test_a_run_may_not_be_named_mean_which_selects_the_average(runs, name):
    with pytest.raises(ConfigError, match=r"reserved|spaces"):
        merge_scores(list(runs), names=[name, "b"])


def test_a_run_whose_model_is_called_mean_needs_another_name(runs):
    with pytest.raises(ConfigError, match=r"reserved.*--name"):
        merge_scores([scored_run([0.0], model="org/mean"), scored_run([1.0], model="org/other")])


def test_curate_merge_scores_refuses_the_name_mean_in_one_line(runs, tmp_path):
    paths = []
    for number, run in enumerate(runs):
        run.save_to_disk(str(tmp_path / f"run{number}"))
        paths.append(str(tmp_path / f"run{number}"))
    result = runner.invoke(app, ["merge-scores", *paths, "--name", "mean", "--name", "b", "--out", str(tmp_path / "m")])
    assert result.exit_code == 2 and result.output.count("Error:") == 1 and "reserved" in result.output
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("name", ["", "a\x00b", "a\x1b[31m", "tab\there"])
def test_run_names_that_are_empty_or_hold_control_characters_are_refused(runs, name):
    with pytest.raises(ConfigError, match="run name"):
        merge_scores(list(runs), names=[name, "b"])


def test_names_with_brackets_and_html_are_kept_as_written(runs):
    merged = merge_scores(list(runs), names=["ckpt[/]", "<b>x</b>"])
    assert filter_difficulty(merged, "hard", model="ckpt[/]")["difficulty"][:] == [1.0, 1.0]


def test_a_per_model_filter_carries_that_models_difficulty_and_score_columns(merged):
    kept = filter_difficulty(merged, "hard", model="b")
    assert kept["problem"][:] == ["q0", "q1"]
    assert kept["difficulty"][:] == [1.0, 1.0]  # b's, not the mean (0.5 for q0)
    assert kept["num_correct"][:] == [0, 0] and kept["num_truncated"][:] == [1, 2] and kept["num_rollouts"][:] == [4, 4]
    assert kept["pass_rate_low"][:] == [0.0, 0.0]
    provenance = read_provenance(kept)
    assert provenance["difficulty_model"] == "b" and provenance["model"] == "org/m-b"
    assert provenance["answer_extractor"] == "answer-is"


def test_every_later_step_buckets_a_per_model_selection_by_that_model(merged):
    kept = filter_difficulty(merged, "hard", model="b")
    assert summarize(kept).buckets == {"easy": 0, "medium": 0, "hard": 2}
    assert len(filter_difficulty(kept, "hard")) == 2
    assert "`org/m-b`" in str(render_card(kept, "me/hard-for-b"))


def test_a_per_model_selection_cannot_pass_for_the_mean(merged):
    kept = filter_difficulty(merged, "hard", model="b")
    with pytest.raises(ConfigError, match="already holds 'b'"):
        filter_difficulty(kept, "hard", model="mean")


def test_a_per_model_mix_and_stratify_carry_that_models_difficulty(merged):
    drawn = mix(merged, "hard=1", num_rows=2, seed=0, model="b")
    assert sorted(drawn["problem"][:]) == ["q0", "q1"] and drawn["difficulty"][:] == [1.0, 1.0]
    assert read_provenance(drawn)["difficulty_model"] == "b" and read_provenance(drawn)["mix"]["model"] == "b"
    parts = stratify(merged, model="a")
    assert {name: part["difficulty"][:] for name, part in parts.items()} == {
        "easy": [0.0],
        "medium": [0.5],
        "hard": [1.0, 1.0],
    }


def test_curate_filter_by_model_prints_and_saves_that_models_buckets(merged, tmp_path):
    merged.save_to_disk(str(tmp_path / "merged"))
    out = tmp_path / "hard-b"
    args = ["filter", str(tmp_path / "merged"), "--model", "b", "--bucket", "hard", "--out", str(out), "--json"]
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["buckets"] == {"easy": 0, "medium": 0, "hard": 2}
    shown = runner.invoke(app, ["stats", str(out), "--json"], catch_exceptions=False)
    assert json.loads(shown.stdout)["buckets"]["hard"] == 2


def test_the_merged_provenance_keeps_each_runs_facts_per_run(runs, merged):
    provenance = read_provenance(merged)
    assert "answer_extractor" not in provenance and "answer_extractor" in provenance["differs_by_run"]
    assert provenance["merged_runs"]["b"]["truncated_share"] == 0.25
    assert provenance["truncated_rollouts"] == 3  # every run's rollouts together
    assert provenance["num_rollouts"] == 4 and provenance["model"] == "mean of a, b"


def test_the_summary_knows_every_runs_finish_reasons(merged):
    summary = summarize(merged)
    assert (summary.truncated_rollouts, summary.rollouts_finish_known, summary.rollouts_finish_unknown) == (3, 28, 0)


def test_the_card_names_each_runs_extractor_and_truncation(merged):
    card = str(render_card(merged, "me/merged"))
    assert "a: `boxed`" in card and "b: `answer-is`" in card
    assert "truncated share 0.25" in card


def test_rows_a_run_lacks_are_missing_not_failed(runs):
    a, b = runs
    merged = merge_scores([a.select(range(2)), b], names=["a", "b"])
    by_model = summarize(merged).by_model
    assert by_model["a"]["missing"] == 2 and by_model["a"]["failed"] == 0
    assert by_model["b"]["failed"] == 1 and by_model["b"]["missing"] == 0
    errors = merged["difficulty_error_by_model"][:]
    assert errors[3] == {"a": None, "b": "engine: boom"}


def test_one_row_runs_merge_and_an_empty_run_is_named(runs):
    one = merge_scores([scored_run([0.5]), scored_run([1.0], model="n")], names=["x", "y"])
    assert one["difficulty"][:] == [0.75]
    with pytest.raises(ConfigError, match="run 2 holds no rows"):
        merge_scores([scored_run([0.5]), scored_run([], model="n")], names=["x", "y"])
