"""What one row, one answer type or one model path can do to a run: fail itself, never the run, never silently."""

import csv
import json
import logging
import time

import pytest
from datasets import Dataset
from typer.testing import CliRunner

from difficulty_curation import ConfigError, ModelLoadError, score_difficulty
from difficulty_curation.cli import app
from difficulty_curation.runners.run_folder import score_to_dir

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(arg) for arg in args])


@pytest.fixture()
def digits_csv(digits, tmp_path):
    """12 digits as a CSV of image paths whose integer answer column has one blank cell (pandas reads floats)."""
    path = tmp_path / "digits.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "problem", "solution"])
        for index, row in enumerate(digits.select(range(12))):
            image = tmp_path / f"digit-{index}.png"
            row["image"].save(image)
            writer.writerow([image, row["problem"], "" if index == 5 else int(row["solution"])])
    return path


def test_a_csv_integer_answer_column_with_a_blank_cell_still_scores_by_value(digits_csv, trained_vlm, tmp_path):
    result = invoke(
        "score", digits_csv, "--model", trained_vlm, "--out", tmp_path / "run", "-k", 4, "--max-new-tokens", 4,
        "--quiet", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    # datasets reads the blank cell as null (pandas would give NaN): either way it is that row's missing answer
    [[row, reason]] = summary["failed_rows"]
    assert row == 5 and reason.startswith("solution: answer is missing")
    assert summary["buckets"]["hard"] < summary["num_scored"] == 11  # "3.0" matches the answer "3"


def test_a_reference_the_verifier_cannot_judge_fails_its_row_and_a_mostly_failed_run_warns(
    digits, tiny_vlm, tmp_path, caplog
):
    dicts = Dataset.from_list(
        [{**row, "solution": {"digit": row["solution"]}} for row in digits.select(range(3))]
        + [{**digits[3], "solution": {"digit": None}}]
    )
    scorer = score_difficulty(str(tiny_vlm), num_rollouts=2, max_new_tokens=2)
    with caplog.at_level(logging.WARNING):
        scored = score_to_dir(dicts, scorer, tmp_path / "run", batch_size=4, progress=False)
    assert scored["difficulty"] == [None] * 4
    assert all("cannot judge a reference of type dict" in error for error in scored["difficulty_error"])
    assert "4 of 4 rows failed to score (more than half" in caplog.text


def test_a_run_whose_scored_rows_all_land_in_one_bucket_ends_with_a_warning_line(digits, tiny_vlm, tmp_path):
    source = tmp_path / "source"
    digits.select(range(10)).save_to_disk(str(source))
    result = invoke(
        "score", source, "--model", tiny_vlm, "--out", tmp_path / "run", "-k", 2, "--max-new-tokens", 2, "--quiet"
    )
    assert result.exit_code == 0, result.output
    assert "Warning: all 10 scored rows are hard" in result.stdout


@pytest.fixture()
def rows_with_an_image_token_in_the_text(digits):
    rows = digits.select(range(4)).to_list()
    rows[1]["problem"] = "<image> " + rows[1]["problem"]  # LLaVA-style data often keeps the literal token
    return Dataset.from_list(rows, features=digits.features)


def test_a_literal_image_token_in_the_prompt_fails_only_its_row(
    rows_with_an_image_token_in_the_text, tiny_vlm, tmp_path
):
    scorer = score_difficulty(str(tiny_vlm), num_rollouts=2, max_new_tokens=2)
    scored = score_to_dir(rows_with_an_image_token_in_the_text, scorer, tmp_path / "run", batch_size=4, progress=False)
    assert scored["difficulty_error"][1].startswith("problem: the engine failed on this row (")
    assert [error for i, error in enumerate(scored["difficulty_error"]) if i != 1] == ["", "", ""]
    assert all(scored["difficulty"][i] is not None for i in (0, 2, 3))


def test_fail_fast_stops_at_a_row_the_engine_cannot_take_with_one_line(
    rows_with_an_image_token_in_the_text, tiny_vlm, tmp_path
):
    source = tmp_path / "source"
    rows_with_an_image_token_in_the_text.save_to_disk(str(source))
    result = invoke(
        "score",
        source,
        "--model",
        tiny_vlm,
        "--out",
        tmp_path / "run",
        "-k",
        2,
        "--max-new-tokens",
        2,
        "--quiet",
        "--fail-fast",
    )
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: row 1: problem: the engine failed on this row (") and "fail_fast" in line


def test_a_chat_message_without_content_fails_only_its_row(digits, tiny_vlm, tmp_path):
    rows = [
        {"image": row["image"], "problem": [{"role": "user", "content": row["problem"]}], "solution": row["solution"]}
        for row in digits.select(range(3))
    ]
    rows[2]["problem"] = [{"role": "user", "content": None}]
    scorer = score_difficulty(str(tiny_vlm), num_rollouts=2, max_new_tokens=2)
    scored = score_to_dir(Dataset.from_list(rows), scorer, tmp_path / "run", batch_size=3, progress=False)
    assert scored["difficulty_error"] == ["", "", "problem: message 0 has content of type NoneType; "
                                         "expected a string or a list of {'type': ...} parts"]  # fmt: skip


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("/no/such/model", "model path '/no/such/model' does not exist"),
        ("./no/such/model", "model path './no/such/model' does not exist"),
        ("~/no-such-model-dir", "model path '~/no-such-model-dir' does not exist"),
    ],
)
def test_a_model_path_that_does_not_exist_fails_at_once_naming_it(model, message):
    started = time.monotonic()
    with pytest.raises(ModelLoadError, match=message):
        _ = score_difficulty(model).engine
    assert time.monotonic() - started < 5


def test_a_model_path_that_is_a_file_fails_at_once_naming_it(tmp_path):
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"not a model folder")
    with pytest.raises(ModelLoadError, match=f"model '{weights}' is a file; pass the folder"):
        _ = score_difficulty(str(weights)).engine


def test_a_name_that_is_neither_a_folder_nor_a_hub_id_is_a_config_error():
    with pytest.raises(ConfigError, match="'org/name/extra' is neither an existing folder nor a Hub id"):
        _ = score_difficulty("org/name/extra").engine


def test_an_uncached_hub_model_fails_fast_when_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    with pytest.raises(ModelLoadError, match="'some-org/not-cached' is not in the local Hub cache and HF_HUB_OFFLINE"):
        _ = score_difficulty("some-org/not-cached").engine
    assert time.monotonic() - started < 5


def test_the_cli_names_a_missing_model_path_before_any_progress_line(digits, tmp_path):
    source = tmp_path / "source"
    digits.select(range(2)).save_to_disk(str(source))
    result = invoke("score", source, "--model", tmp_path / "missing-model", "--out", tmp_path / "run")
    assert result.exit_code == 2
    assert result.stderr.strip() == f"Error: model path '{tmp_path / 'missing-model'}' does not exist; pass an " \
        "existing folder made by save_pretrained or a Hub id."  # fmt: skip
