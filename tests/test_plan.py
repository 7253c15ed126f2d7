"""`curate plan` / `plan_run`: a pilot at max k, what each smaller k would give, and the full run that reuses it."""

import json
import time

import pytest
from datasets import load_from_disk
from helpers import CountingEngine
from typer.testing import CliRunner

from difficulty_curation import score_difficulty
from difficulty_curation.buckets import bucket_of
from difficulty_curation.cli import app
from difficulty_curation.demo import digits_dataset
from difficulty_curation.engines.loader import load_engine
from difficulty_curation.plan import plan_run
from difficulty_curation.provenance import read_provenance
from difficulty_curation.runners import score_dataset, score_to_dir
from difficulty_curation.runners.run_state import drop_scores

#: The sampling every run here shares: the plan chooses k and adaptive, everything else stays.
SAMPLING = {"max_new_tokens": 4, "seed": 3}
PILOT, MAX_K, BATCH = 24, 16, 8


@pytest.fixture(scope="module")
def forty_digits():
    return digits_dataset(split="train", num_rows=40)


@pytest.fixture(scope="module")
def planned(trained_vlm, forty_digits, tmp_path_factory):
    """A plan of the 40 digits from a 24-row pilot at k=16, made through `curate plan --json`."""
    root = tmp_path_factory.mktemp("plan")
    forty_digits.save_to_disk(str(root / "data"))
    out = root / "scored"
    command = ["plan", str(root / "data"), "--model", str(trained_vlm), "--pilot", str(PILOT), "--max-k", str(MAX_K)]
    command += ["--max-new-tokens", "4", "--seed", "3", "--batch-size", str(BATCH), "--out", str(out), "-q", "--json"]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    return json.loads(result.output), out


def estimate(plan, k):
    return next(item for item in plan["estimates"] if item["num_rollouts"] == k)


def pilot_rows(out):
    return drop_scores(load_from_disk(str(out)))


def buckets(scored):
    return [bucket_of(row["difficulty"]) for row in scored]


def test_the_plan_compares_k_4_8_and_16_on_a_pilot_of_the_rows_asked_for(planned):
    plan, out = planned
    assert [item["num_rollouts"] for item in plan["estimates"]] == [4, 8, 16]
    assert plan["pilot_rows"] == PILOT and plan["dataset_rows"] == 40
    assert len(load_from_disk(str(out))) == PILOT


def test_the_k8_agreement_the_plan_reports_is_that_of_two_real_runs_on_the_pilot_rows(trained_vlm, planned):
    plan, out = planned
    rows = pilot_rows(out)
    at_8 = score_dataset(
        rows, score_difficulty(str(trained_vlm), num_rollouts=8, **SAMPLING), batch_size=BATCH, progress=False
    )
    at_16 = score_dataset(
        rows, score_difficulty(str(trained_vlm), num_rollouts=16, **SAMPLING), batch_size=BATCH, progress=False
    )
    agree = sum(a == b for a, b in zip(buckets(at_8), buckets(at_16)))
    assert estimate(plan, 8)["agreement"] == pytest.approx(agree / len(rows))
    assert estimate(plan, 16)["agreement"] == 1.0


def test_the_adaptive_saving_the_plan_predicts_is_that_of_a_real_adaptive_run(trained_vlm, planned):
    plan, out = planned
    rows = pilot_rows(out)
    scorer = score_difficulty(str(trained_vlm), num_rollouts=MAX_K, adaptive=True, **SAMPLING)
    adaptive = score_dataset(rows, scorer, batch_size=BATCH, progress=False)
    drawn = sum(adaptive["num_rollouts"])
    assert estimate(plan, MAX_K)["adaptive_rollouts_per_row"] == pytest.approx(drawn / len(rows))
    assert estimate(plan, MAX_K)["adaptive_saving"] == pytest.approx(1 - drawn / (len(rows) * MAX_K), abs=1e-4)


@pytest.mark.parametrize("adaptive", [False, True], ids=["plain", "adaptive"])
def test_the_full_run_after_a_plan_draws_nothing_for_the_pilot_rows_and_records_the_plan(
    trained_vlm, forty_digits, planned, tmp_path, adaptive
):
    plan, out = planned
    import shutil

    run = tmp_path / "scored"
    shutil.copytree(out, run)
    pilot = load_from_disk(str(run))
    scorer = score_difficulty(str(trained_vlm), num_rollouts=8, keep_rollouts=True, adaptive=adaptive, **SAMPLING)
    engine = CountingEngine(load_engine(scorer.config))
    scorer.engine = engine
    scored = score_to_dir(forty_digits, scorer, run, batch_size=BATCH, progress=False)
    drawn = set(engine.requests)
    assert len(drawn) == 40 - PILOT  # every other row was drawn, no pilot row
    by_image = {row["image"].tobytes(): row for row in scored}
    for row in pilot:
        kept = by_image[row["image"].tobytes()]["rollouts"]
        assert kept == row["rollouts"][: len(kept)] and (adaptive or len(kept) == 8)
    assert read_provenance(scored)["plan"]["recommended_k"] == plan["recommended_k"]


def test_the_plan_recommends_a_k_and_prints_the_score_command_into_the_same_folder(planned):
    plan, out = planned
    chosen = estimate(plan, plan["recommended_k"])
    assert chosen["agreement"] >= 0.9 or plan["recommended_k"] == MAX_K
    assert all(item["agreement"] < 0.9 for item in plan["estimates"] if item["num_rollouts"] < plan["recommended_k"])
    assert plan["recommended_adaptive"] == (chosen["adaptive_saving"] >= 0.1)
    assert f"-k {plan['recommended_k']}" in plan["command"] and f"--out {out}" in plan["command"]
    assert "--seed 3" in plan["command"] and "--max-new-tokens 4" in plan["command"]
    assert "extrapolation" in plan["notes"][0]


def test_the_plan_reports_answer_lengths_against_max_new_tokens(planned):
    lengths = planned[0]["lengths"]
    assert lengths["answers"] == PILOT * MAX_K and lengths["max_new_tokens"] == 4
    share = lengths["cut_off_share"]
    if share >= 0.01:
        assert lengths["smallest_limit"] is None and "cannot be known" in lengths["note"]
    else:
        assert 1 <= lengths["smallest_limit"] <= 4


def test_the_pilots_token_rate_counts_every_generated_token_end_of_sequence_included(planned):
    throughput = planned[0]["throughput"]
    per_rollout = throughput["tokens_per_second"] / throughput["rollouts_per_second"]
    assert 1 <= per_rollout <= 4  # at least the end-of-sequence token, at most max_new_tokens


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--pilot", "50"], "pilot of 50 rows is larger than the dataset (40 rows)"),
        (["--max-k", "1"], "max_k must be an integer >= 2"),
        (["--price-per-hour", "-1"], "price_per_hour must be a number >= 0"),
        (["--pilot", "1.5"], "neither a whole number of rows nor a share"),
    ],
)
def test_a_bad_plan_option_is_one_clear_line(empty_model, forty_digits, tmp_path, options, message):
    forty_digits.save_to_disk(str(tmp_path / "data"))
    command = ["plan", str(tmp_path / "data"), "--model", str(empty_model), "--out", str(tmp_path / "out"), *options]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and message in lines[0], result.output


def test_curate_plan_takes_the_scoring_options_of_curate_score_but_k_and_adaptive():
    import typer

    commands = typer.main.get_command(app).commands
    plan = {param.name: param for param in commands["plan"].params}
    score = {param.name: param for param in commands["score"].params}
    planned_by_it = {"num_rollouts", "adaptive", "keep_rollouts", "fail_fast", "retry_failed", "use_ray", "num_workers"}
    for name in set(score) - planned_by_it:
        assert name in plan, name
        if name not in ("source", "out", "split", "overwrite", "quiet", "json_output"):
            assert (plan[name].default, plan[name].help) == (score[name].default, score[name].help), name
    assert not planned_by_it & set(plan)


@pytest.mark.slow
def test_the_time_the_plan_extrapolates_is_within_a_factor_of_four_of_a_real_full_run(trained_vlm, tmp_path):
    data = digits_dataset(split="train", num_rows=64)
    scorer = score_difficulty(str(trained_vlm), **SAMPLING)
    plan = plan_run(data, scorer, tmp_path / "plan", pilot=16, max_k=8, batch_size=BATCH, progress=False)
    full = score_difficulty(str(trained_vlm), num_rollouts=8, **SAMPLING)
    _ = full.engine  # start-up apart, as the plan measures it
    started = time.perf_counter()
    score_to_dir(data, full, tmp_path / "fresh", batch_size=BATCH, progress=False)
    measured = time.perf_counter() - started
    predicted = plan.estimates[-1].hours * 3600 - plan.throughput["startup_seconds"]
    # On the demo model a run takes well under a second: the pilot's fixed costs (first-call warm-up,
    # assembling its folder) weigh on its rate, so the tolerance is a factor of 4 (measured: 0.49 s for 0.20 s).
    assert measured / 4 <= predicted <= measured * 4, (predicted, measured)


def test_a_plan_runs_on_the_openai_backend_and_predicts_its_adaptive_rounds(trained_vlm, tmp_path, monkeypatch):
    from helpers import start_openai_server

    process, url = start_openai_server(trained_vlm)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-unused")
    try:
        data = digits_dataset(split="train", num_rows=16)
        scorer = score_difficulty(str(trained_vlm), backend="openai", api_base=url, **SAMPLING)
        plan = plan_run(data, scorer, tmp_path / "plan", pilot=12, max_k=8, batch_size=BATCH, progress=False)
        rows = pilot_rows(tmp_path / "plan")
        real = score_difficulty(
            str(trained_vlm), backend="openai", api_base=url, num_rollouts=8, adaptive=True, **SAMPLING
        )
        adaptive = score_dataset(rows, real, batch_size=BATCH, progress=False)
    finally:
        process.kill()
        process.wait()
    assert [e.num_rollouts for e in plan.estimates] == [4, 8]
    assert plan.estimates[-1].adaptive_rollouts_per_row == pytest.approx(sum(adaptive["num_rollouts"]) / len(rows))
    assert plan.lengths["answers"] == 12 * 8 and plan.throughput["rollouts_per_second"] > 0
