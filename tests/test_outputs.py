"""Output folders: written aside and swapped in whole; never a folder we did not write; a killed overwrite is unfinished."""

import json
import shutil
import signal
import subprocess
import sys
import time

import pytest
from export_fixtures import scored_digits
from typer.testing import CliRunner

from difficulty_curation import score_difficulty
from difficulty_curation.cli import app
from difficulty_curation.errors import ConfigError
from difficulty_curation.exports import export_swift
from difficulty_curation.outputs import MARKER_FILE, write_aside
from difficulty_curation.outputs import RUN_STATE_DIR as STATE_DIR
from difficulty_curation.runners.run_folder import score_to_dir

runner = CliRunner()
CURATE = [sys.executable, "-m", "difficulty_curation.cli"]
SMALL = ["--max-new-tokens", "2", "--batch-size", "1", "--quiet"]


@pytest.fixture(scope="module")
def scored(digits):
    return scored_digits(digits)


@pytest.fixture(scope="module")
def scored_dir(scored, tmp_path_factory):
    folder = tmp_path_factory.mktemp("scored") / "scored"
    scored.save_to_disk(str(folder))
    return folder


# -- the module ------------------------------------------------------------------------------------


def test_a_write_that_fails_half_way_leaves_the_earlier_output_as_it_was(tmp_path):
    out = tmp_path / "out"
    with write_aside(out) as staging:
        (staging / "a.txt").write_text("first")
    with pytest.raises(RuntimeError), write_aside(out, overwrite=True) as staging:
        (staging / "a.txt").write_text("second, half-written")
        raise RuntimeError("disk full")
    assert (out / "a.txt").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging folder left behind


def test_overwrite_replaces_only_what_we_wrote(tmp_path):
    out = tmp_path / "out"
    with write_aside(out) as staging:
        (staging / "a.txt").write_text("first")
    assert json.loads((out / MARKER_FILE).read_text())["entries"] == ["a.txt"]
    (out / "notes.txt").write_text("mine")  # a user's file added to our output
    with (
        pytest.raises(ConfigError, match=r"did not write \(notes.txt\)"),
        write_aside(out, overwrite=True),
    ):
        pass
    assert (out / "notes.txt").read_text() == "mine"


def test_a_symlinked_out_replaces_the_folder_it_points_to_and_stays_a_link(tmp_path):
    real, link = tmp_path / "real", tmp_path / "link"
    with write_aside(real) as staging:
        (staging / "a.txt").write_text("first")
    link.symlink_to(real)
    with write_aside(link, overwrite=True) as staging:
        (staging / "a.txt").write_text("second")
    assert link.is_symlink() and (real / "a.txt").read_text() == "second"


# -- 1. a killed `score --overwrite` is an unfinished run for every reader ------------------------------


def test_a_killed_score_overwrite_is_unfinished_for_stats_export_and_push(tiny_vlm, digits, tmp_path):
    data, run = tmp_path / "data", tmp_path / "run"
    digits.select(range(16)).save_to_disk(str(data))
    score_to_dir(
        digits.select(range(16)), score_difficulty(str(tiny_vlm), num_rollouts=4, max_new_tokens=2), run, progress=False
    )
    process = subprocess.Popen(
        [*CURATE, "score", str(data), "--model", str(tiny_vlm), "--out", str(run), "-k", "2", *SMALL, "--overwrite"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            spec = json.loads((run / STATE_DIR / "run.json").read_text())
            if spec["scoring"]["num_rollouts"] == 2:
                break
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    assert json.loads((run / STATE_DIR / "run.json").read_text())["scoring"]["num_rollouts"] == 2
    stats = subprocess.run([*CURATE, "stats", str(run), "--json"], capture_output=True, text=True)
    if stats.returncode == 0:  # the new run finished before the kill: then it is the new data
        assert json.loads(stats.stdout)["num_rows"] == 16
        from datasets import load_from_disk

        assert set(load_from_disk(str(run))["num_rollouts"]) == {2}
        return
    assert stats.returncode == 2 and "is not finished" in stats.stderr, stats.stderr
    exported = runner.invoke(app, ["export", str(run), "--format", "trl", "--out", str(tmp_path / "trl")])
    assert exported.exit_code == 2 and "is not finished" in exported.output


# -- 4. export: built aside, swapped on success, never deletes what it did not write -----------------


def test_export_overwrite_refuses_an_earlier_export_that_now_holds_a_run_folder(scored, tiny_vlm, digits, tmp_path):
    out = tmp_path / "export"
    export_swift(scored, out)
    score_to_dir(
        digits.select(range(2)),
        score_difficulty(str(tiny_vlm), num_rollouts=2, max_new_tokens=2),
        out / "run",
        progress=False,
    )
    with pytest.raises(ConfigError, match=r"holds a scoring run .*refusing to replace it even with --overwrite"):
        export_swift(scored, out, overwrite=True)
    assert (out / "run" / STATE_DIR / "rollouts.sqlite").exists()


def test_export_overwrite_that_fails_keeps_the_earlier_export(scored, tmp_path):
    out = tmp_path / "export"
    export_swift(scored, out)
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(ConfigError, match="unknown bucket"):
        export_swift(scored, out, buckets="medum", overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == before


def test_export_into_a_symlinked_folder_writes_into_the_folder_it_points_to(scored_dir, tmp_path):
    real, link = tmp_path / "real", tmp_path / "link"
    real.mkdir()
    link.symlink_to(real)
    for extra in ([], ["--overwrite"]):
        result = runner.invoke(app, ["export", str(scored_dir), "--format", "trl", "--out", str(link), *extra])
        assert result.exit_code == 0, result.output
    assert link.is_symlink() and (real / "train.parquet").exists() and (real / MARKER_FILE).exists()


def test_export_onto_an_empty_mount_point_writes_into_it_and_overwrite_replaces_it(scored_dir, tmp_path):
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-rm", "true"]).returncode != 0:
        pytest.skip("needs unprivileged user + mount namespaces to mount a tmpfs")
    mount = tmp_path / "mnt"
    mount.mkdir()
    curate = " ".join(CURATE)
    script = f"""
        mount -t tmpfs tmpfs "$2" || exit 99
        {curate} export "$1" --format swift --bucket easy --out "$2"; echo "first exit $?"
        {curate} export "$1" --format swift --bucket hard --out "$2" --overwrite; echo "second exit $?"
        ls -A "$2"; grep -c . "$2/train.jsonl"
    """
    result = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script, "sh", str(scored_dir), str(mount)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "first exit 0" in result.stdout and "second exit 0" in result.stdout, result.stdout + result.stderr
    listing = result.stdout.split("second exit 0")[1].split()
    assert MARKER_FILE in listing and "train.jsonl" in listing and not any("partial" in n for n in listing)
    assert listing[-1] == "4"  # the four hard rows, not the easy ones
    assert "Traceback" not in result.stderr
