import json

import pytest
from datasets import load_from_disk
from typer.testing import CliRunner

from difficulty_curation.cli import app

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
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("score", "rescore", "filter", "stratify", "stats", "card", "audit", "sft", "eval", "demo"):
        assert command in result.output
    for command in ("score", "rescore", "filter", "stratify", "stats", "card", "audit", "sft", "eval", "demo"):
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


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["score", "./no/such/file.parquet", "--model", "m"], "does not exist"),
        (["score", "DATA", "--model", "m", "--num-rollouts", "0"], "num_rollouts must be an integer >= 1, got 0"),
        (["score", "DATA", "--model", "m", "--verifier", "fuzzy"], "verifier='fuzzy' is not known"),
        (["score", "DATA", "--model", "m", "--backend", "onnx"], "backend='onnx' is not known"),
        (["score", "DATA", "--model", "m", "--temperature", "-1"], "temperature must be a number >= 0.0"),
        (["filter", "SCORED", "--min", "0.9", "--max", "0.1", "--out", "OUT"], "min=0.9 is greater than max=0.1"),
        (["stratify", "SCORED", "--bins", "0.5,0.1", "--out", "OUT"], "strictly increasing"),
    ],
)
def test_bad_arguments_fail_with_a_message_naming_the_value(args, message, digits_file, scored_dir, tmp_path):
    replacements = {"DATA": str(digits_file), "SCORED": str(scored_dir), "OUT": str(tmp_path / "out")}
    result = runner.invoke(app, [replacements.get(a, a) for a in args])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_an_output_path_that_is_a_file_is_refused(scored_dir, tmp_path):
    target = tmp_path / "taken"
    target.write_text("not a folder")
    result = runner.invoke(app, ["filter", str(scored_dir), "--bucket", "easy", "--out", str(target)])
    assert result.exit_code == 2 and "is a file" in result.output
