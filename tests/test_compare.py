"""Runs side by side: compare, merge-scores and the per-model views, on real scored runs of the demo model."""

import json
from collections import Counter

import numpy as np
import pytest
from datasets import Dataset, load_from_disk
from scipy.stats import spearmanr
from typer.testing import CliRunner

from difficulty_curation.audit import audit_hard_rows
from difficulty_curation.buckets import bucket_of
from difficulty_curation.cards import render_card
from difficulty_curation.cli import app
from difficulty_curation.compare import NOISE_QUANTILE, STATES, compare_runs, merge_scores, plot_comparison, spearman
from difficulty_curation.errors import ConfigError
from difficulty_curation.provenance import attach_provenance, read_provenance
from difficulty_curation.recipes.options import SFTOptions
from difficulty_curation.recipes.sft import sft
from difficulty_curation.runners.run_folder import score_to_dir
from difficulty_curation.scoring import score_difficulty
from difficulty_curation.stats import summarize
from difficulty_curation.transforms import filter_difficulty, stratify
from difficulty_curation.verifiers import extract_answer, normalize_label

runner = CliRunner()


@pytest.fixture(scope="module")
def runs(scored_checkpoints):
    """The checkpoint runs loaded: name -> scored Dataset."""
    return {name: load_from_disk(str(scored_checkpoints[name])) for name in ("before", "after", "seed1")}


def _difficulty(dataset):
    return dataset["difficulty"][:]


def test_rows_are_matched_by_content_not_by_position(runs):
    shuffled = runs["before"].shuffle(seed=3)
    comparison = compare_runs([runs["before"], shuffled], names=["a", "b"])
    assert comparison.matched == 24 and comparison.only_in == {"a": 0, "b": 0}
    assert all(row["delta"] == 0 for row in comparison.deltas)
    assert any(row["index"][0] != row["index"][1] for row in comparison.deltas)
    assert comparison.moved == [] and comparison.bucket_changes == 0


def test_the_transition_matrix_of_two_checkpoints_shows_the_rows_that_moved(runs):
    comparison = compare_runs([runs["before"], runs["after"]], names=["before", "after"])
    expected = Counter(
        (bucket_of(a) or "failed", bucket_of(b) or "failed")
        for a, b in zip(_difficulty(runs["before"]), _difficulty(runs["after"]))
    )
    assert {(a, b): n for a, row in comparison.transitions.items() for b, n in row.items() if n} == dict(expected)
    assert sum(n for (a, b), n in expected.items() if a != b) == comparison.bucket_changes > 0
    assert sum(v for row in comparison.transition_shares.values() for v in row.values()) == pytest.approx(1, abs=1e-3)
    assert set(comparison.transitions) == set(STATES)


def test_per_row_deltas_and_the_rank_correlation_are_those_of_the_two_runs(runs):
    before, after = _difficulty(runs["before"]), _difficulty(runs["after"])
    comparison = compare_runs([runs["before"], runs["after"]])
    assert [row["delta"] for row in comparison.deltas] == pytest.approx([b - a for a, b in zip(before, after)])
    assert comparison.rank_correlation == pytest.approx(spearmanr(before, after).statistic, abs=1e-5)
    assert comparison.mean_abs_delta == pytest.approx(np.mean(np.abs(np.subtract(after, before))), abs=1e-5)


def test_the_rows_that_moved_most_come_first_with_their_references_and_majority_answers(runs):
    comparison = compare_runs([runs["before"], runs["after"]], top=5)
    changes = [abs(row["delta"]) for row in comparison.moved]
    assert changes == sorted(changes, reverse=True) and len(changes) == 5 and changes[0] > 0
    for row in comparison.moved:
        first = row["index"][0]
        assert row["reference"] == runs["before"][first]["solution"]
        rollouts = runs["after"][row["index"][1]]["rollouts"]
        expected = Counter(normalize_label(extract_answer(r)) for r in rollouts).most_common(1)[0][0]
        assert row["majority_answer"][1] == expected


def test_rows_present_in_only_one_run_are_counted_not_dropped(runs):
    first = runs["before"].select(range(20))
    last = runs["after"].select(range(4, 24))
    comparison = compare_runs([first, last], names=["first", "last"])
    assert comparison.matched == 16
    assert comparison.only_in == {"first": 4, "last": 4}
    assert comparison.missing_from == {"first": 4, "last": 4}


def test_the_noise_floor_from_two_seeds_says_how_many_rows_moved_beyond_it(runs, scored_checkpoints):
    comparison = compare_runs(
        [scored_checkpoints["before"], scored_checkpoints["after"]],
        noise=[scored_checkpoints["before"], scored_checkpoints["seed1"]],
    )
    seed_changes = np.abs(np.subtract(_difficulty(runs["seed1"]), _difficulty(runs["before"])))
    floor = float(np.quantile(seed_changes, NOISE_QUANTILE))
    changes = np.abs(np.subtract(_difficulty(runs["after"]), _difficulty(runs["before"])))
    assert comparison.noise.floor == pytest.approx(floor, abs=1e-6)
    assert comparison.noise.exceeding_rows == int((changes > floor + 1e-9).sum()) > 0
    assert comparison.noise.exceeding_share == pytest.approx(comparison.noise.exceeding_rows / 24, abs=1e-4)


def test_noise_runs_must_be_one_model_with_two_seeds(scored_checkpoints):
    with pytest.raises(ConfigError, match="one model scored with two different seeds"):
        compare_runs(
            [scored_checkpoints["before"], scored_checkpoints["after"]],
            noise=[scored_checkpoints["before"], scored_checkpoints["after"]],
        )


def test_default_names_are_the_models_with_the_seed_where_a_model_repeats(scored_checkpoints):
    comparison = compare_runs([scored_checkpoints[name] for name in ("before", "after", "seed1")])
    model = scored_checkpoints["after_model"].name
    assert comparison.names == ["demo-vlm-v3 seed=0", model, "demo-vlm-v3 seed=1"]


def test_the_comparison_is_json_and_plots(runs, tmp_path):
    comparison = compare_runs([runs["before"], runs["after"]])
    data = json.loads(json.dumps(comparison.to_dict()))
    assert data["matched"] == 24 and len(data["deltas"]) == 24
    assert "deltas" not in comparison.to_dict(rows=False)
    assert plot_comparison(comparison, tmp_path / "compare.png").stat().st_size > 1000


def test_curate_compare_prints_the_matrix_and_the_noise_floor_and_json(scored_checkpoints, tmp_path):
    paths = {name: str(scored_checkpoints[name]) for name in ("before", "after", "seed1")}
    args = ["compare", paths["before"], paths["after"], "--noise", paths["before"], "--noise", paths["seed1"]]
    result = runner.invoke(app, [*args, "--plot", str(tmp_path / "c.png")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "Bucket transitions" in result.stdout and "Noise floor" in result.stdout
    assert "Rows that moved most" in result.stdout and (tmp_path / "c.png").exists()
    as_json = runner.invoke(app, [*args, "--json"], catch_exceptions=False)
    expected = compare_runs([paths["before"], paths["after"]], noise=[paths["before"], paths["seed1"]])
    assert json.loads(as_json.stdout)["transitions"] == expected.transitions


# -- merged scores --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def merged(runs):
    return merge_scores([runs["before"], runs["after"]], names=["before", "after"])


def test_merge_keeps_every_models_difficulty_and_the_runs_provenance(runs, merged):
    by_model = merged["difficulty_by_model"][:]
    assert [row["before"] for row in by_model] == pytest.approx(_difficulty(runs["before"]))
    assert [row["after"] for row in by_model] == pytest.approx(_difficulty(runs["after"]))
    means = [np.mean([row["before"], row["after"]]) for row in by_model]
    assert _difficulty(merged) == pytest.approx(means, abs=1e-6)
    provenance = read_provenance(merged)
    assert provenance["merged_runs"]["before"] == read_provenance(runs["before"])
    assert provenance["merged_runs"]["after"] == read_provenance(runs["after"])
    assert provenance["comparison"]["matched"] == 24
    assert merged["solution"][:] == runs["before"]["solution"][:]


def test_a_row_missing_from_one_run_keeps_none_for_that_model(runs):
    merged = merge_scores([runs["before"].select(range(20)), runs["after"]], names=["before", "after"])
    assert len(merged) == 24
    missing = [row for row in merged["difficulty_by_model"][:] if row["before"] is None]
    assert len(missing) == 4 and all(row["after"] is not None for row in missing)


def test_filter_selects_on_one_model_the_mean_or_agreement(runs, merged):
    rows = merged["difficulty_by_model"][:]
    all_easy = filter_difficulty(merged, where="all easy")
    assert len(all_easy) == sum(row["before"] == 0 and row["after"] == 0 for row in rows)
    hard_after = filter_difficulty(merged, "hard", model="after")
    assert len(hard_after) == sum(row["after"] == 1 for row in rows) > 0
    easy_mean = filter_difficulty(merged, "easy", model="mean")
    assert len(easy_mean) == sum(bucket_of(v) == "easy" for v in _difficulty(merged))
    none_hard = filter_difficulty(merged, where="none hard")
    assert len(none_hard) == sum(row["before"] != 1 and row["after"] != 1 for row in rows)


def test_stratify_by_one_model_gives_that_models_buckets(runs, merged):
    parts = stratify(merged, model="after")
    assert {name: len(part) for name, part in parts.items()} == summarize(runs["after"]).buckets


def test_selecting_an_unknown_model_or_a_bad_condition_says_what_to_write(merged, runs):
    with pytest.raises(ConfigError, match="its models: before, after"):
        filter_difficulty(merged, "easy", model="nosuch")
    with pytest.raises(ConfigError, match="QUANTIFIER BUCKET"):
        filter_difficulty(merged, where="most hard")
    with pytest.raises(ConfigError, match="merge-scores"):
        filter_difficulty(runs["before"], where="all hard")


def test_stats_and_the_card_show_each_model_and_the_comparison(merged, runs):
    summary = summarize(merged)
    assert summary.by_model["after"] == {**summarize(runs["after"]).buckets, "failed": 0, "missing": 0}
    card = str(render_card(merged, "me/merged"))
    assert "## Across models and checkpoints" in card and "| before \\ after |" in card


def test_curate_merge_scores_then_stats_and_filter_where(scored_checkpoints, tmp_path):
    paths = [str(scored_checkpoints["before"]), str(scored_checkpoints["seed1"])]
    result = runner.invoke(app, ["merge-scores", *paths, "--out", str(tmp_path / "merged")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "Buckets per model" in result.stdout and "demo-vlm-v3 seed=1" in result.stdout
    stats = runner.invoke(app, ["stats", str(tmp_path / "merged"), "--json"], catch_exceptions=False)
    assert set(json.loads(stats.stdout)["by_model"]) == {"demo-vlm-v3 seed=0", "demo-vlm-v3 seed=1"}
    kept = runner.invoke(
        app,
        ["filter", str(tmp_path / "merged"), "--where", "all easy", "--out", str(tmp_path / "easy"), "--json"],
        catch_exceptions=False,
    )
    assert kept.exit_code == 0, kept.output
    rows = load_from_disk(str(tmp_path / "merged"))["difficulty_by_model"][:]
    assert json.loads(kept.stdout)["num_rows"] == sum(all(v == 0 for v in row.values()) for row in rows)


# -- the audit of merged scores -------------------------------------------------------------------


@pytest.fixture(scope="module")
def mislabeled_runs(digits, trained_vlm, tmp_path_factory):
    """12 digits, 4 of them labelled one digit off, scored by the demo model and by a gently trained checkpoint."""
    wrong = {1, 4, 7, 10}
    rows = digits.select(range(12)).map(
        lambda row, i: {"solution": str((int(row["solution"]) + 1) % 10) if i in wrong else row["solution"]},
        with_indices=True,
    )
    root = tmp_path_factory.mktemp("mislabeled")
    gentle = SFTOptions(full=True, learning_rate=1e-3, warmup_ratio=0.0, max_steps=4, batch_size=8)
    other = sft(digits, str(trained_vlm), root / "other-model", options=gentle, progress=False)
    runs = []
    for name, model in (("demo", trained_vlm), ("other", other)):
        scorer = score_difficulty(str(model), num_rollouts=4, max_new_tokens=4, keep_rollouts=True)
        runs.append(score_to_dir(rows, scorer, root / name, batch_size=12, progress=False))
    return runs, wrong


def test_the_audit_of_merged_scores_lists_rows_every_model_gets_wrong_with_one_answer(mislabeled_runs):
    runs, wrong = mislabeled_runs
    merged = merge_scores(runs, names=["demo", "other"])
    expected = set()
    for index in range(len(merged)):
        difficulties, answers = merged[index]["difficulty_by_model"], merged[index]["majority_answer_by_model"]
        if all(d == 1.0 for d in difficulties.values()) and len(set(answers.values())) == 1:
            expected.add(index)
    groups = audit_hard_rows(merged)
    assert {row for group in groups for row in group.rows} == expected
    assert expected and expected <= wrong  # what every model gets wrong alike is a wrong label here
    for group in groups:
        assert group.models == 2 and group.reference != group.majority_answer


def test_curate_audit_reads_merged_scores(mislabeled_runs, tmp_path):
    runs, _ = mislabeled_runs
    merge_scores(runs, names=["demo", "other"]).save_to_disk(str(tmp_path / "merged"))
    result = runner.invoke(app, ["audit", str(tmp_path / "merged"), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    groups = json.loads(result.stdout)
    assert groups and all(group["models"] == 2 for group in groups)
    assert [g.to_dict() for g in audit_hard_rows(load_from_disk(str(tmp_path / "merged")))] == groups


def test_the_audit_of_merged_scores_needs_the_majority_answers(runs):
    merged = merge_scores([runs["before"].remove_columns(["rollouts", "rollout_scores"]), runs["after"]])
    assert "majority_answer_by_model" in merged.column_names  # one run kept its rollouts
    unkept = merge_scores([r.remove_columns(["rollouts", "rollout_scores"]) for r in (runs["before"], runs["after"])])
    with pytest.raises(ConfigError, match="--keep-rollouts"):
        audit_hard_rows(unkept)


@pytest.mark.parametrize("command", ["compare", "merge-scores", "mix"])
def test_the_new_commands_have_help_with_an_example_and_json(command):
    help_text = runner.invoke(app, [command, "--help"]).output
    assert "Example:" in help_text and "--json" in help_text


def _run(rows, model="m", seed=0):
    """A small scored dataset with its provenance (rows: (problem, solution, difficulty))."""
    dataset = Dataset.from_list([{"problem": p, "solution": s, "difficulty": d} for p, s, d in rows])
    record = {"model": model, "seed": seed, "num_rollouts": 4, "prompt_column": "problem", "answer_column": "solution"}
    return attach_provenance(dataset, {**record, "image_column": None})


def test_a_repeated_row_pairs_with_its_repeat_in_order():
    first = _run([("q", "1", 0.0), ("q", "1", 1.0), ("r", "2", 0.5)])
    last = _run([("r", "2", 0.5), ("q", "1", 0.25), ("q", "1", 0.75)], model="n")
    comparison = compare_runs([first, last])
    assert comparison.matched == 3
    assert sorted((row["index"][0], row["index"][1]) for row in comparison.deltas) == [(0, 1), (1, 2), (2, 0)]
    assert spearman([0, 0, 1, 1], [0, 1, 1, 1]) == pytest.approx(spearmanr([0, 0, 1, 1], [0, 1, 1, 1]).statistic)


def test_stratify_can_keep_only_rows_the_models_agree_on():
    a = _run([("q1", "1", 0.0), ("q2", "1", 1.0), ("q3", "1", 0.5)], model="a")
    b = _run([("q1", "1", 0.0), ("q2", "1", 0.5), ("q3", "1", 0.5)], model="b")
    parts = stratify(merge_scores([a, b]), where="any medium")
    assert {name: part["problem"][:] for name, part in parts.items()} == {
        "easy": [],
        "medium": ["q2", "q3"],
        "hard": [],
    }
