"""Training and eval outputs: written aside and swapped in whole, never over the model or a run, never NaN."""

import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from difficulty_curation.cli import app
from difficulty_curation.errors import ConfigError, TrainingDivergedError
from difficulty_curation.outputs import MARKER_FILE
from difficulty_curation.recipes.sft import SFTOptions, sft

runner = CliRunner()
ONE_STEP = SFTOptions(max_steps=1, batch_size=2, warmup_ratio=0.0, logging_steps=1)


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def rows(digits, tmp_path_factory):
    folder = tmp_path_factory.mktemp("rows") / "rows"
    digits.select(range(2)).save_to_disk(str(folder))
    return folder


def test_sft_onto_the_model_it_trains_is_refused_and_the_weights_stay(tiny_vlm, rows, tmp_path):
    before = _digest(tiny_vlm)
    result = runner.invoke(app, ["sft", str(rows), "--model", str(tiny_vlm), "--out", str(tiny_vlm), "--full"])
    assert result.exit_code == 2 and "the model this command reads" in result.output, result.output
    result = runner.invoke(
        app, ["sft", str(rows), "--model", str(tiny_vlm), "--out", str(tiny_vlm), "--full", "--overwrite"]
    )
    assert result.exit_code == 2 and "the model this command reads" in result.output, result.output
    assert _digest(tiny_vlm) == before


def test_sft_overwrite_replaces_an_earlier_adapter_whole(tiny_vlm, digits, tmp_path):
    out = tmp_path / "lora"
    sft(digits.select(range(2)), str(tiny_vlm), out, options=ONE_STEP, progress=False)
    assert json.loads((out / "sft_options.json").read_text())["rows"] == 2
    with pytest.raises(ConfigError, match="is not empty; pass --overwrite"):
        sft(digits.select(range(4)), str(tiny_vlm), out, options=ONE_STEP, progress=False)
    sft(digits.select(range(4)), str(tiny_vlm), out, options=ONE_STEP, progress=False, overwrite=True)
    assert json.loads((out / "sft_options.json").read_text())["rows"] == 4
    assert (out / MARKER_FILE).exists() and sorted(p.name for p in tmp_path.iterdir()) == ["lora"]


def test_a_learning_rate_above_one_is_refused_before_anything_loads(empty_model, digits, tmp_path):
    options = SFTOptions(max_steps=2, batch_size=2, warmup_ratio=0.0, logging_steps=1, learning_rate=1e30)
    with pytest.raises(ConfigError, match=r"learning_rate \(--learning-rate\) must be at most 1: .*got 1e\+30"):
        sft(digits.select(range(2)), str(empty_model), tmp_path / "lora", options=options, progress=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["sft", "grpo"])
@pytest.mark.parametrize(
    ("rate", "message"),
    [
        ("1e30", "learning_rate (--learning-rate) must be at most 1"),
        ("1.5", "learning_rate (--learning-rate) must be at most 1"),
        ("0", "learning_rate (--learning-rate) must be a number > 0, got 0.0."),
        ("-1", "learning_rate (--learning-rate) must be a number > 0, got -1.0."),
        ("nan", "learning_rate (--learning-rate) must be a number > 0, got nan."),
        ("inf", "learning_rate (--learning-rate) must be a number > 0, got inf."),
    ],
)
def test_curate_refuses_a_learning_rate_outside_zero_to_one_in_one_line(command, rate, message, empty_model, rows):
    out = str(rows.parent / "never")
    result = runner.invoke(
        app, [command, str(rows), "--model", str(empty_model), "--out", out, "--learning-rate", rate]
    )
    assert result.exit_code == 2, result.output
    assert result.output.strip() == f"Error: {message}" or message in result.output.strip().splitlines()[0]
    assert "Traceback" not in result.output and not Path(out).exists()


def test_training_that_collapses_fails_and_saves_nothing(trained_vlm, digits, tmp_path):
    # lr 0.1 keeps every loss finite, yet takes the demo model from 100% to 0% on these very rows
    options = SFTOptions(learning_rate=0.1, max_steps=4, batch_size=8)
    with pytest.raises(TrainingDivergedError, match=r"training collapsed: the loss of the answers .* rose from"):
        sft(digits.select(range(16)), str(trained_vlm), tmp_path / "lora", options=options, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_curate_sft_that_collapses_is_one_error_line_and_no_model(trained_vlm, digits, tmp_path):
    data = tmp_path / "rows"
    digits.select(range(16)).save_to_disk(str(data))
    arguments = ["sft", str(data), "--model", str(trained_vlm), "--out", str(tmp_path / "lora")]
    result = runner.invoke(app, [*arguments, "--learning-rate", "1", "--max-steps", "4", "--quiet"])
    assert result.exit_code == 2, result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert "training collapsed" in line and "Lower --learning-rate" in line
    assert not (tmp_path / "lora").exists()


def test_a_run_that_trains_records_its_probe_loss_going_down(tiny_vlm, digits, tmp_path):
    options = SFTOptions(learning_rate=5e-3, max_steps=6, batch_size=8, warmup_ratio=0.0)
    sft(digits.select(range(8)), str(tiny_vlm), tmp_path / "lora", options=options, progress=False)
    record = json.loads((tmp_path / "lora" / "sft_options.json").read_text())
    assert record["probe_loss_after"] < record["probe_loss_before"]


SFT_WITH_A_SLOW_SAVE = """
import sys, time
from difficulty_curation.recipes import training
from difficulty_curation.cli import app

save = training.write_log_history
def slow(trainer, path):  # the adapter and the processor are saved: signal the test, then take a while
    open(sys.argv[1], "w").close()
    time.sleep(30)
    return save(trainer, path)
training.write_log_history = slow
app(sys.argv[2:])
"""


def test_sigterm_during_the_save_leaves_no_output_that_looks_finished(tiny_vlm, rows, tmp_path):
    out, saving = tmp_path / "lora", tmp_path / "saving"
    args = ["--out", str(out), "--max-steps", "1", "--batch-size", "2", "--merge"]
    process = subprocess.Popen(
        [sys.executable, "-c", SFT_WITH_A_SLOW_SAVE, str(saving), "sft", str(rows), "--model", str(tiny_vlm), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    while not saving.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert saving.exists(), stderr[-2000:]
    assert process.returncode == 143, stderr[-2000:]
    assert not out.exists()  # nothing at --out: not an adapter without its options
    assert list(tmp_path.iterdir()) == [saving]  # and no staging folder left behind
    result = runner.invoke(app, ["eval", str(out), "--dataset", f"id={rows}"])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_eval_refuses_a_model_folder_saved_only_in_part(tiny_vlm, rows, tmp_path):
    partial = tmp_path / "merged"
    partial.mkdir()
    (partial / "config.json").write_text((tiny_vlm / "config.json").read_text())
    result = runner.invoke(app, ["eval", str(partial), "--dataset", f"id={rows}"])
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"Error: model {str(partial)!r} is incomplete (config.json without weights): its save was interrupted; "
        "save or train it again."
    )


def test_eval_out_never_replaces_a_users_results_and_refuses_before_evaluating(empty_model, rows, tmp_path):
    out = tmp_path / "eval"
    out.mkdir()
    (out / "results.md").write_text("my own results")
    started = time.monotonic()
    for extra in ([], ["--overwrite"]):
        result = runner.invoke(app, ["eval", str(empty_model), "--dataset", f"id={rows}", "--out", str(out), *extra])
        assert result.exit_code == 2 and str(out) in result.output, result.output
    assert time.monotonic() - started < 5  # refused before any model loads
    assert (out / "results.md").read_text() == "my own results"


def test_training_and_evaluating_zero_rows_are_refused_before_any_model_loads(empty_model, digits, tmp_path):
    from difficulty_curation.recipes.evaluate import evaluate
    from difficulty_curation.recipes.grpo import grpo

    none = digits.select([])
    with pytest.raises(ConfigError, match="no rows to train on"):
        sft(none, str(empty_model), tmp_path / "sft")
    with pytest.raises(ConfigError, match="no rows to train on"):
        grpo(none, str(empty_model), tmp_path / "grpo")
    with pytest.raises(ConfigError, match="evaluation set 'id' has no rows"):
        evaluate(str(empty_model), {"id": none})
    assert list(tmp_path.iterdir()) == []
