import dataclasses
import json
import logging

import datasets
import huggingface_hub
import pytest
import typer.main
from datasets import load_from_disk
from transformers.utils import logging as transformers_logging
from typer.testing import CliRunner

import difficulty_curation.recipes.grpo
import difficulty_curation.recipes.sft
from difficulty_curation.cli import app
from difficulty_curation.columns import Columns
from difficulty_curation.errors import cli_flag
from difficulty_curation.exports import FORMATS
from difficulty_curation.recipes.options import GRPOOptions, SFTOptions
from difficulty_curation.redact import RedactingFilter, configure_logging
from difficulty_curation.sources import scored_folder
from difficulty_curation.verifiers import VERIFIERS

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def digits_file(digits, tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "digits.parquet"
    digits.to_parquet(str(path))
    return path


@pytest.fixture(scope="module")
def scored_dir(digits_file, trained_vlm, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "scored"
    result = invoke(
        "score", digits_file, "--model", trained_vlm, "--out", out, "-k", 8, "--max-new-tokens", 4, "--quiet", "--json"
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["num_rows"] == 24 and summary["num_failed"] == 0 and summary["saved_to"] == str(out)
    return out


def test_help_explains_every_command():
    commands = typer.main.get_command(app).commands
    assert {"score", "push", "export", "sft", "grpo", "eval", "demo"} <= set(commands)
    result = invoke("--help")
    assert result.exit_code == 0
    for command in commands:
        assert command in result.output
        help_text = invoke(command, "--help").output
        assert "Example:" in help_text, command


def test_score_saves_a_dataset_with_difficulty_columns(scored_dir, digits):
    scored = load_from_disk(str(scored_dir))["train"]
    assert len(scored) == len(digits)
    assert {"difficulty", "num_correct", "num_rollouts", "difficulty_error"} <= set(scored.column_names)
    assert scored.features["difficulty"].dtype == "float32"
    assert set(scored["num_rollouts"]) == {8}


def test_stats_reports_buckets_and_plots(scored_dir, tmp_path):
    plot = tmp_path / "hist.png"
    result = invoke("stats", scored_dir, "--json", "--plot", plot)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert sum(summary["buckets"].values()) == 24
    assert plot.read_bytes()[:4] == b"\x89PNG"
    table = invoke("stats", scored_dir).output
    assert "Difficulty buckets" in table and "medium" in table and "Histogram" in table


def test_filter_keeps_only_the_requested_bucket(scored_dir, tmp_path):
    result = invoke("filter", scored_dir, "--bucket", "medium", "--out", tmp_path / "medium", "--json")
    assert result.exit_code == 0, result.output
    kept = load_from_disk(str(tmp_path / "medium"))["train"]
    assert all(0 < d < 1 for d in kept["difficulty"])
    assert json.loads(result.stdout)["buckets"]["medium"] == len(kept)


def test_stratify_writes_one_split_per_bucket(scored_dir, tmp_path):
    result = invoke("stratify", scored_dir, "--out", tmp_path / "buckets", "--json")
    assert result.exit_code == 0, result.output
    buckets = load_from_disk(str(tmp_path / "buckets"))
    assert list(buckets) == ["easy", "medium", "hard"]
    assert sum(len(part) for part in buckets.values()) == 24
    binned = invoke("stratify", scored_dir, "--out", tmp_path / "bins", "--bins", "0,0.5,1", "--json")
    assert json.loads(binned.stdout)["buckets"].keys() == {"0-0.5", "0.5-1"}


def test_a_missing_column_is_one_clear_line_and_exit_code_2(digits_file, tiny_vlm, tmp_path):
    result = runner.invoke(
        app,
        ["score", str(digits_file), "--model", str(tiny_vlm), "--answer-column", "label", "--out", str(tmp_path / "x")],
    )
    assert result.exit_code == 2
    assert (
        "answer_column='label' is not a column of the dataset; available columns: image, problem, solution"
        in result.output
    )
    assert "Traceback" not in result.output


def test_an_output_path_that_is_a_file_is_refused(scored_dir, tmp_path):
    target = tmp_path / "taken"
    target.write_text("not a folder")
    result = runner.invoke(app, ["filter", str(scored_dir), "--bucket", "easy", "--out", str(target)])
    assert result.exit_code == 2 and "is a file" in result.output


def test_verifier_and_format_help_lists_every_registered_name():
    commands = typer.main.get_command(app).commands
    for command in ("score", "rescore", "grpo", "eval"):
        (verifier,) = [param for param in commands[command].params if param.name == "verifier"]
        assert all(name in verifier.help for name in VERIFIERS), command
    (export_format,) = [param for param in commands["export"].params if param.name == "format"]
    assert all(name in export_format.help for name in FORMATS)


def test_without_out_score_writes_next_to_the_current_folder_under_the_sources_name():
    assert scored_folder("data/train.parquet").as_posix() == "train-scored"
    assert scored_folder("my-org/digits").as_posix() == "digits-scored"
    assert scored_folder("runs/").as_posix() == "runs-scored"


@pytest.mark.parametrize(("command", "options_class"), [("sft", SFTOptions), ("grpo", GRPOOptions)])
def test_the_training_flags_are_the_options_fields_with_their_defaults_and_help(command, options_class):
    params = {param.name: param for param in typer.main.get_command(app).commands[command].params}
    for item in dataclasses.fields(options_class):
        name = cli_flag(item.name).removeprefix("--").replace("-", "_")
        if not item.metadata["flag"]:
            assert name not in params, name
            continue
        assert params[name].opts == [cli_flag(item.name)], name
        assert params[name].default == item.default and params[name].help == item.metadata["help"], name


@pytest.mark.parametrize("command", ["sft", "grpo"])
def test_the_training_commands_hand_the_recipe_its_options_columns_and_quiet(
    command, digits_file, tmp_path, monkeypatch
):
    calls = []
    monkeypatch.setattr(
        getattr(difficulty_curation.recipes, command),
        command,
        lambda *args, **kwargs: calls.append((args, kwargs)) or tmp_path / "o",
    )
    result = invoke(
        command,
        digits_file,
        "--model",
        "my-org/m",
        "--out",
        tmp_path / "o",
        "--lora-rank",
        8,
        "--epochs",
        2,
        "--image-column",
        "none",
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    (rows, model, out), kwargs = calls[0]
    assert len(rows) == 24 and model == "my-org/m" and out == tmp_path / "o"
    options = kwargs["options"]
    assert (options.lora_rank, options.lora_alpha, options.num_train_epochs) == (8, 16, 2.0)  # alpha: twice the rank
    assert kwargs["progress"] is False and kwargs["columns"] == Columns(image_column=None)  # 'none': text-only


def test_logs_are_redacted_and_the_libraries_speak_only_with_verbose(monkeypatch):
    monkeypatch.setattr(logging, "root", logging.RootLogger(logging.WARNING))  # a root without handlers yet
    before = (
        datasets.logging.get_verbosity(),
        huggingface_hub.utils.logging.get_verbosity(),
        transformers_logging.get_verbosity(),
        datasets.is_progress_bar_enabled(),
    )
    try:
        configure_logging(verbose=False)
        (handler,) = logging.root.handlers
        assert any(isinstance(f, RedactingFilter) for f in handler.filters)
        assert logging.root.level == logging.WARNING
        assert datasets.logging.get_verbosity() == huggingface_hub.utils.logging.get_verbosity() == logging.ERROR
        assert transformers_logging.get_verbosity() == logging.ERROR and not datasets.is_progress_bar_enabled()
    finally:
        datasets.logging.set_verbosity(before[0])
        huggingface_hub.utils.logging.set_verbosity(before[1])
        transformers_logging.set_verbosity(before[2])
        if before[3]:
            datasets.enable_progress_bars()
