"""Run folders: one owner at a time, resume checked against the rows' content, nothing replaced by accident."""

import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from datasets import load_from_disk
from helpers import counted_scorer, scores
from typer.testing import CliRunner

from difficulty_curation import score_difficulty
from difficulty_curation.cli import app
from difficulty_curation.errors import RunStateError
from difficulty_curation.outputs import RUN_STATE_DIR as STATE_DIR
from difficulty_curation.rollout_cache import rollout_key
from difficulty_curation.runners import rescore_dir, score_to_dir

runner = CliRunner()


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its bytes (the lock file aside: it only names its last holder)."""
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != "lock"
    }


# -- 1. one owner per run folder ------------------------------------------------------------------

SLOW_RUN = textwrap.dedent(
    """
    import sys, time
    from datasets import load_from_disk
    from difficulty_curation import score_difficulty
    from difficulty_curation.engines.loader import load_engine
    from difficulty_curation.runners.run_folder import score_to_dir

    data, model, out, started = sys.argv[1:5]
    scorer = score_difficulty(model, num_rollouts=4, max_new_tokens=4)

    class SlowEngine:
        def __init__(self, inner):
            self.inner = inner

        def generate(self, requests, num_rollouts, **options):
            open(started, "a").close()
            time.sleep(600)  # hold the folder until the test kills this process
            return self.inner.generate(requests, num_rollouts, **options)

    scorer.engine = SlowEngine(load_engine(scorer.config))
    score_to_dir(load_from_disk(data), scorer, out, batch_size=4, progress=False)
    """
)


def curate(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "difficulty_curation.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_a_second_process_on_a_live_run_folder_is_refused_naming_the_holder_and_a_killed_holder_blocks_nothing(
    tiny_vlm, digits, tmp_path
):
    data, out, started = tmp_path / "data", tmp_path / "run", tmp_path / "started"
    digits.select(range(16)).save_to_disk(str(data))
    owner = subprocess.Popen(
        [sys.executable, "-c", SLOW_RUN, str(data), str(tiny_vlm), str(out), str(started)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not started.exists() and owner.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert started.exists(), owner.stderr.read().decode()[-2000:]
        options = ["--model", tiny_vlm, "--out", out, "-k", 4, "--max-new-tokens", 4, "--batch-size", 4, "--quiet"]
        second = curate("score", data, *options)
        assert second.returncode == 2, second.stderr
        assert second.stderr.strip() == (
            f"Error: {str(out)!r} is in use by another curate process (PID {owner.pid}); wait for it to finish "
            "or stop it, then run the same command again."
        )
        overwriting = curate("score", data, *options, "-k", 2, "--overwrite")
        assert overwriting.returncode == 2 and f"PID {owner.pid}" in overwriting.stderr
        assert json.loads((out / STATE_DIR / "run.json").read_text())["scoring"]["num_rollouts"] == 4
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    resumed = curate("score", data, *options, "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["num_rows"] == 16


def test_rescoring_a_run_that_is_being_scored_is_refused(tiny_vlm, twelve_digits, tmp_path):
    from difficulty_curation.runlock import RunLock, RunLockedError

    out = tmp_path / "run"
    score_to_dir(twelve_digits.select(range(4)), counted_scorer(tiny_vlm)[0], out, batch_size=4, progress=False)
    with RunLock(out / STATE_DIR), pytest.raises(RunLockedError, match="in use by another curate process"):
        rescore_dir(out, correct_threshold=0.5, progress=False)


def test_a_dataset_without_rows_is_refused_before_any_folder_is_made(tiny_vlm, twelve_digits, tmp_path):
    from difficulty_curation.errors import ConfigError

    with pytest.raises(ConfigError, match="has no rows"):
        score_to_dir(twelve_digits.select([]), score_difficulty(str(tiny_vlm)), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


# -- 2. resume checks the rows' content, not the source's name ------------------------------------


def test_relabelled_rows_are_scored_again_on_resume_from_cached_rollouts(
    tiny_vlm, twelve_digits, reference_run, tmp_path
):
    out = tmp_path / "run"
    score_to_dir(twelve_digits, counted_scorer(tiny_vlm)[0], out, batch_size=4, progress=False)
    labels = list(twelve_digits["solution"])
    labels[5] = reference_run["rollouts"][5][0]  # the label the model's first answer gives: now judged correct
    relabelled = twelve_digits.remove_columns("solution").add_column("solution", labels)
    again, engine = counted_scorer(tiny_vlm)
    resumed = score_to_dir(relabelled, again, out, batch_size=4, progress=False)
    fresh = score_to_dir(relabelled, counted_scorer(tiny_vlm)[0], tmp_path / "fresh", batch_size=4, progress=False)
    assert scores(resumed) == scores(fresh)
    assert resumed["num_correct"][5] > reference_run["num_correct"][5]
    assert engine.requests == []  # the prompts did not change: their rollouts came from the cache


def test_reordered_rows_are_scored_again_on_resume(tiny_vlm, twelve_digits, tmp_path):
    out = tmp_path / "run"
    score_to_dir(twelve_digits, counted_scorer(tiny_vlm)[0], out, batch_size=4, progress=False)
    reordered = twelve_digits.select(list(reversed(range(12))))
    resumed = score_to_dir(reordered, counted_scorer(tiny_vlm)[0], out, batch_size=4, progress=False)
    fresh = score_to_dir(reordered, counted_scorer(tiny_vlm)[0], tmp_path / "fresh", batch_size=4, progress=False)
    assert scores(resumed) == scores(fresh)


def test_the_same_source_spelled_another_way_resumes_without_generating(tiny_vlm, twelve_digits, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    twelve_digits.save_to_disk("data")
    options = ["--model", tiny_vlm, "--out", "run", "-k", 2, "--max-new-tokens", 2, "--batch-size", 4, "--quiet"]
    first = runner.invoke(app, ["score", "data", *map(str, options)])
    assert first.exit_code == 0, first.output
    finished = snapshot(tmp_path / "run" / STATE_DIR / "shards")
    again = runner.invoke(app, ["score", f"{tmp_path / 'data'}/", *map(str, options)])
    assert again.exit_code == 0, again.output
    assert snapshot(tmp_path / "run" / STATE_DIR / "shards") == finished  # nothing was scored again


# -- 5. nothing replaced by accident ----------------------------------------------------------------


def test_rescore_into_another_finished_run_is_refused_and_leaves_it_whole(
    tiny_vlm, twelve_digits, reference_run, tmp_path
):
    other = tmp_path / "other"
    score_to_dir(twelve_digits.select(range(4)), counted_scorer(tiny_vlm)[0], other, batch_size=4, progress=False)
    before = snapshot(other)
    source = reference_run.cache_files[0]["filename"]
    result = runner.invoke(app, ["rescore", str(Path(source).parent), "--out", str(other), "--overwrite"])
    assert result.exit_code == 2 and "holds a scoring run" in result.output
    assert snapshot(other) == before


@pytest.mark.parametrize("command", ["filter", "stratify"])
def test_writing_into_a_non_empty_folder_needs_overwrite_and_replaces_only_our_own_output(
    command, reference_run, tmp_path
):
    scored = str(Path(reference_run.cache_files[0]["filename"]).parent)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    extra = ["--bucket", "hard"] if command == "filter" else []
    refused = runner.invoke(app, [command, scored, "--out", str(out), *extra])
    assert refused.exit_code == 2 and "is not empty" in refused.output and "--overwrite" in refused.output
    assert (out / "notes.txt").read_text() == "mine"
    refused = runner.invoke(app, [command, scored, "--out", str(out), *extra, "--overwrite"])
    assert refused.exit_code == 2 and "did not write" in refused.output  # never a folder we did not write
    (out / "notes.txt").unlink()
    assert runner.invoke(app, [command, scored, "--out", str(out), *extra]).exit_code == 0
    replaced = runner.invoke(app, [command, scored, "--out", str(out), *extra, "--overwrite"])
    assert replaced.exit_code == 0, replaced.output
    assert load_from_disk(str(out)) is not None


def test_overwrite_never_replaces_a_run_folder_and_its_rollout_cache(reference_run, tmp_path):
    run = Path(reference_run.cache_files[0]["filename"]).parent
    before = snapshot(run)
    result = runner.invoke(app, ["filter", str(run), "--bucket", "hard", "--out", str(run), "--overwrite"])
    assert result.exit_code == 2 and "which this command reads" in result.output  # its own input
    reference_run.save_to_disk(str(tmp_path / "copy"))
    result = runner.invoke(app, ["filter", str(tmp_path / "copy"), "--out", str(run), "--overwrite"])
    assert result.exit_code == 2 and "holds a scoring run" in result.output  # any run
    assert snapshot(run) == before


@pytest.mark.parametrize(
    "args",
    [
        ["score", "DATA", "--model", "MODEL", "--ray", "--out", "OUT"],
        ["demo", "--rows", "4", "--out", "OUT"],
    ],
)
def test_score_with_ray_and_demo_refuse_a_non_empty_folder_before_any_work(args, tiny_vlm, digits, tmp_path):
    data = tmp_path / "data.parquet"
    digits.select(range(4)).to_parquet(str(data))
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    replacements = {"DATA": str(data), "MODEL": str(tiny_vlm), "OUT": str(out)}
    result = runner.invoke(app, [replacements.get(a, a) for a in args])
    # --ray writes a run folder like a local run, so it refuses like one
    refusal = "already holds files that are not a scoring run" if "--ray" in args else "is not empty"
    assert result.exit_code == 2 and refusal in result.output
    assert (out / "notes.txt").read_text() == "mine"


def test_an_in_place_rescore_that_fails_half_way_leaves_the_run_as_it_was(tiny_vlm, twelve_digits, tmp_path):
    out = tmp_path / "run"
    scorer, _ = counted_scorer(tiny_vlm)
    score_to_dir(twelve_digits, scorer, out, batch_size=4, progress=False)
    hashes = [r.content_hash for r in scorer.prepare(twelve_digits.select(range(8, 12))[:]).requests.values()]
    connection = sqlite3.connect(out / STATE_DIR / "rollouts.sqlite")
    with connection:  # the last batch's rollouts are gone: rescoring stops there, after two batches
        connection.executemany("DELETE FROM rollouts WHERE key = ?", [(rollout_key(scorer.config, h),) for h in hashes])
    connection.close()
    before = snapshot(out)
    with pytest.raises(RunStateError, match="no cached rollouts"):
        rescore_dir(out, correct_threshold=0.5, progress=False)
    assert snapshot(out) == before
    assert sorted(p.name for p in (out / STATE_DIR).iterdir()) == sorted(
        ["lock", "manifest.json", "rollouts.sqlite", "run.json", "shards"]
    )


# -- 6. a lost manifest is rebuilt only from shards of the right rows ----------------------------


def test_a_damaged_manifest_is_rebuilt_only_from_shards_that_hold_their_own_batch(
    tiny_vlm, twelve_digits, reference_run, tmp_path
):
    out = tmp_path / "run"
    score_to_dir(twelve_digits, counted_scorer(tiny_vlm)[0], out, batch_size=4, progress=False)
    shards = out / STATE_DIR / "shards"
    shutil.copy(shards / "train-00000002.parquet", shards / "train-00000001.parquet")  # right size, wrong rows
    (out / STATE_DIR / "manifest.json").write_text("{damaged")
    again, engine = counted_scorer(tiny_vlm)
    result = score_to_dir(twelve_digits, again, out, batch_size=4, progress=False)
    assert scores(result) == scores(reference_run)
    assert engine.requests == []  # batch 1 was rebuilt from its cached rollouts
