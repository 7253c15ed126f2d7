"""Truncated rollouts and thinking templates on real engines: finish reasons, `num_truncated`, the
policies through `rescore` (no model loads), old run folders, `chat_template_kwargs`."""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3

import pyarrow.parquet as pq
import pytest
from datasets import Dataset, load_from_disk
from helpers import CUT_OFF, assert_finish_reasons_are_real
from typer.testing import CliRunner

from difficulty_curation import score_difficulty
from difficulty_curation.cli import app
from difficulty_curation.engines.transformers import TransformersEngine
from difficulty_curation.outputs import RUN_STATE_DIR as STATE_DIR
from difficulty_curation.prompts import build_request
from difficulty_curation.provenance import read_provenance
from difficulty_curation.rollout_cache import rollout_key
from difficulty_curation.runners import rescore_dir, score_to_dir
from difficulty_curation.runners.in_memory import score_dataset
from difficulty_curation.transforms import bucket_of


@pytest.fixture(scope="module")
def twelve(digits):
    return digits.select(range(12))


@pytest.fixture(scope="module")
def cut_off_run(trained_vlm, twelve, tmp_path_factory):
    """`twelve` scored with CUT_OFF into a run folder, from a copy of the model that is deleted afterwards:
    anything that tries to load the model later fails."""
    root = tmp_path_factory.mktemp("cut-off")
    model = root / "model"
    shutil.copytree(trained_vlm, model)
    scored = score_to_dir(twelve, score_difficulty(str(model), **CUT_OFF), root / "run", batch_size=4, progress=False)
    shutil.rmtree(model)
    return root / "run", scored


def test_the_transformers_backend_knows_which_rollouts_hit_max_new_tokens(trained_vlm, twelve, cut_off_run):
    _, short = cut_off_run
    longer = score_dataset(
        twelve, score_difficulty(str(trained_vlm), **{**CUT_OFF, "max_new_tokens": 8}), progress=False
    )
    truncated, _ = assert_finish_reasons_are_real(short, longer)
    assert sum(short["num_truncated"]) == truncated
    assert read_provenance(short)["truncated_rollouts"] == truncated


def test_exclude_changes_difficulty_exactly_by_dropping_the_truncated_rollouts_without_loading_the_model(
    cut_off_run, tmp_path
):
    run, judged = cut_off_run  # the model folder is gone: a rescore that started an engine would fail
    excluded = rescore_dir(run, truncated="exclude", out_dir=tmp_path / "excluded", progress=False)
    assert read_provenance(excluded)["truncated"] == "exclude"
    assert excluded["rollouts"] == judged["rollouts"] and excluded["num_truncated"] == judged["num_truncated"]
    all_cut = 0
    for before, after in zip(judged, excluded):
        finished = [s for s, r in zip(before["rollout_scores"], before["rollout_finish_reasons"]) if r == "stop"]
        assert after["num_rollouts"] == 8
        if not finished:
            all_cut += 1
            assert after["difficulty"] is None and after["num_correct"] is None
            assert "all 8 rollouts hit max_new_tokens=2" in after["difficulty_error"]
            assert "raise --max-new-tokens" in after["difficulty_error"]
            continue
        correct = sum(score >= 0.5 for score in finished)
        assert after["num_correct"] == correct
        assert after["difficulty"] == pytest.approx(1 - correct / len(finished))
        assert [s is None for s in after["rollout_scores"]] == [r == "length" for r in before["rollout_finish_reasons"]]
    assert all_cut  # some rows had nothing left to judge
    back = rescore_dir(tmp_path / "excluded", truncated="wrong", progress=False)
    assert back["difficulty"] == judged["difficulty"]


def test_rescore_switches_the_answer_extractor_on_cached_rollouts(cut_off_run, tmp_path):
    run, judged = cut_off_run
    result = CliRunner().invoke(
        app,
        ["rescore", str(run), "--answer-extractor", "boxed", "--out", str(tmp_path / "boxed"), "--json", "-q"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    boxed = load_from_disk(str(tmp_path / "boxed"))
    assert set(boxed["num_correct"]) == {0}  # a digit model writes no \boxed{}: no answer, never right
    assert read_provenance(boxed)["answer_extractor"] == "boxed"
    pattern = rescore_dir(tmp_path / "boxed", answer_pattern=r"(\d)", progress=False)  # the last digit written
    assert read_provenance(pattern)["answer_extractor"] == "regex"
    assert sum(pattern["num_correct"]) >= sum(judged["num_correct"])  # "77" was wrong, its last digit is right


def test_a_run_with_many_truncated_rollouts_ends_with_a_warning_naming_max_new_tokens(
    trained_vlm, twelve, tmp_path, caplog
):
    twelve.select(range(4)).save_to_disk(str(tmp_path / "rows"))
    with caplog.at_level(logging.WARNING):
        result = CliRunner().invoke(
            app,
            [
                "score",
                str(tmp_path / "rows"),
                "--model",
                str(trained_vlm),
                "-k",
                "8",
                "--temperature",
                "3.0",
                "--max-new-tokens",
                "2",
                "--out",
                str(tmp_path / "run"),
                "--quiet",
            ],
            catch_exceptions=False,
        )
    assert result.exit_code == 0, result.output
    assert "truncated rollouts (hit max_new_tokens=2; truncated=wrong): " in result.output
    assert "Warning: " in result.output and "Raise --max-new-tokens" in result.output
    assert "hit max_new_tokens=2 before finishing" in caplog.text  # the runner's own log line
    stats = json.loads(CliRunner().invoke(app, ["stats", str(tmp_path / "run"), "--json"]).stdout)
    assert stats["truncated_share"] > 0.1 and stats["rollouts_finish_known"] == 32


def make_old(run):
    """Turn a run folder into one written before finish reasons existed: run.json without the new
    options, shards without the new columns, a rollout cache of plain text lists."""
    state = run / STATE_DIR
    spec = json.loads((state / "run.json").read_text())
    for key in ("answer_extractor", "answer_pattern", "truncated", "chat_template_kwargs"):
        del spec["scoring"][key]
    (state / "run.json").write_text(json.dumps(spec))
    manifest = json.loads((state / "manifest.json").read_text())
    for name, entry in manifest["shards"].items():
        table = pq.read_table(state / "shards" / name)
        pq.write_table(table.drop_columns(["num_truncated", "rollout_finish_reasons"]), state / "shards" / name)
        entry["sha256"] = None
    (state / "manifest.json").write_text(json.dumps(manifest))
    with sqlite3.connect(state / "rollouts.sqlite") as connection:
        rows = connection.execute("SELECT key, rollouts FROM rollouts").fetchall()
        for key, value in rows:
            connection.execute(
                "UPDATE rollouts SET rollouts = ? WHERE key = ?", (json.dumps(json.loads(value)["texts"]), key)
            )


def test_old_run_folders_without_finish_reasons_still_resume_and_rescore(tiny_vlm, twelve, tmp_path):
    options = {"num_rollouts": 2, "max_new_tokens": 3, "keep_rollouts": True}
    first = score_to_dir(
        twelve, score_difficulty(str(tiny_vlm), **options), tmp_path / "run", batch_size=4, progress=False
    )
    make_old(tmp_path / "run")
    (tmp_path / "run" / STATE_DIR / "shards" / "train-00000002.parquet").unlink()  # one batch left to do
    resumed = score_to_dir(
        twelve, score_difficulty(str(tiny_vlm), **options), tmp_path / "run", batch_size=4, progress=False
    )
    assert resumed["difficulty"] == first["difficulty"] and resumed["rollouts"] == first["rollouts"]
    assert resumed["num_truncated"] == [None] * 12  # old shards and old cached rollouts: not known, never 0
    assert resumed["rollout_finish_reasons"][:8] == [None] * 8  # shards written before the column existed
    assert resumed["rollout_finish_reasons"][8:] == [["unknown", "unknown"]] * 4
    provenance = read_provenance(resumed)
    assert provenance["rollouts_finish_unknown"] == 24 and provenance["truncated_share"] is None
    rescored = rescore_dir(tmp_path / "run", truncated="exclude", progress=False)
    assert rescored["difficulty"] == first["difficulty"]  # unknown endings are judged, not excluded
    assert rescored["num_truncated"] == [None] * 12


def test_chat_template_kwargs_reach_the_template_the_cache_key_and_the_provenance(thinking_lm, tmp_path):
    rows = Dataset.from_dict({"problem": ["Which digit comes after 3?"] * 2, "solution": ["4"] * 2})
    thinking = score_difficulty(str(thinking_lm), image_column=None, num_rollouts=2, max_new_tokens=4)
    not_thinking = score_difficulty(
        str(thinking_lm),
        image_column=None,
        num_rollouts=2,
        max_new_tokens=4,
        chat_template_kwargs={"enable_thinking": False},
    )
    request = build_request(rows[0], thinking.config.columns, max_pixels=thinking.config.max_pixels)
    assert TransformersEngine(thinking.config).prefill([request]).groups[0].texts[0].endswith("assistant\n<think>\n")
    assert (
        TransformersEngine(not_thinking.config)
        .prefill([request])
        .groups[0]
        .texts[0]
        .endswith("<think>\n\n</think>\n\n")
    )
    assert rollout_key(thinking.config, request.content_hash) != rollout_key(not_thinking.config, request.content_hash)
    scored = score_to_dir(rows, not_thinking, tmp_path / "run", progress=False)
    assert read_provenance(scored)["chat_template_kwargs"] == {"enable_thinking": False}
    assert scored["num_truncated"] == [2, 2]  # a random model does not end its answer in 4 tokens


def test_the_demo_summary_shows_the_truncation_share(trained_vlm, monkeypatch):
    monkeypatch.setenv("DIFFICULTY_CURATION_CACHE", str(trained_vlm.parent))  # the demo model, already built
    result = CliRunner().invoke(app, ["demo", "--rows", "4", "--quiet"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "truncated rollouts (hit max_new_tokens=8; truncated=wrong): 0 of 32 (0.0%)" in result.output


def test_adaptive_sampling_excluding_truncated_rollouts_lands_every_row_in_its_full_k_bucket(trained_vlm, twelve):
    options = {**CUT_OFF, "truncated": "exclude", "max_new_tokens": 3}
    full = score_dataset(twelve, score_difficulty(str(trained_vlm), **options), progress=False)
    adaptive = score_dataset(twelve, score_difficulty(str(trained_vlm), adaptive=True, **options), progress=False)
    assert [bucket_of(d) if d is not None else None for d in adaptive["difficulty"]] == [
        bucket_of(d) if d is not None else None for d in full["difficulty"]
    ]
    assert sum(adaptive["num_rollouts"]) < sum(full["num_rollouts"])  # medium rows stopped early
