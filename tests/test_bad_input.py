"""A catalogue of bad input and the exact behaviour for each: a failed row with a reason, or a clear error.

Row-level problems never stop a run: the row gets `difficulty=None` and `difficulty_error`
names the column and the problem, and every other row is scored. Problems with the options
or the files fail at once with a message naming the bad value.
"""

import io

import numpy as np
import pytest
from datasets import Dataset, Features, Image, Value
from PIL import Image as PILImage
from typer.testing import CliRunner

from difficulty_curation import ColumnNotFoundError, ConfigError, ModelLoadError, score_difficulty
from difficulty_curation.cli import app
from difficulty_curation.errors import RowError
from difficulty_curation.prompts import load_image
from difficulty_curation.runners.run_folder import score_to_dir
from difficulty_curation.transforms import filter_difficulty, stratify


def _encoded(image: PILImage.Image, image_format: str = "PNG") -> dict:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return {"bytes": buffer.getvalue(), "path": None}


@pytest.fixture(scope="module")
def catalogue(digits):
    """One row per kind of row-level problem, between good rows; scored once for the whole module."""
    good = digits[0]
    real_png = _encoded(good["image"])
    random_png = _encoded(PILImage.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)))
    rows = {
        "good": (real_png, good["problem"], good["solution"]),
        "missing image": (None, good["problem"], good["solution"]),
        "garbage image bytes": ({"bytes": b"not an image at all", "path": None}, good["problem"], good["solution"]),
        "truncated image": ({"bytes": random_png["bytes"][:2000], "path": None}, good["problem"], good["solution"]),
        "image path that does not exist": (
            {"bytes": None, "path": "/no/such/digit.png"},
            good["problem"],
            good["solution"],
        ),
        "image path that is a folder": ({"bytes": None, "path": "/tmp"}, good["problem"], good["solution"]),
        "CMYK JPEG": (_encoded(PILImage.new("CMYK", (8, 8)), "JPEG"), good["problem"], good["solution"]),
        "16-bit grayscale": (_encoded(PILImage.fromarray(np.full((8, 8), 40000, np.uint16))), good["problem"], "7"),
        "palette with transparency": (_encoded(PILImage.new("P", (8, 8))), good["problem"], "7"),
        "huge image": (_encoded(PILImage.new("RGB", (4000, 3000))), good["problem"], "7"),
        "missing answer": (real_png, good["problem"], None),
        "empty answer": (real_png, good["problem"], "  "),
        "empty prompt": (real_png, "", good["solution"]),
        "missing prompt": (real_png, None, good["solution"]),
        "prompt longer than the context": (real_png, "digit " * 600, good["solution"]),
        "duplicate of the good row": (real_png, good["problem"], good["solution"]),
    }
    features = Features({"image": Image(), "problem": Value("string"), "solution": Value("string")})
    dataset = Dataset.from_list(
        [{"image": i, "problem": p, "solution": s} for i, p, s in rows.values()], features=features
    )
    return list(rows), dataset


@pytest.fixture(scope="module")
def scored_catalogue(catalogue, tiny_vlm, tmp_path_factory):
    kinds, dataset = catalogue
    scorer = score_difficulty(str(tiny_vlm), num_rollouts=3, max_new_tokens=4, keep_rollouts=True)
    scored = score_to_dir(dataset, scorer, tmp_path_factory.mktemp("catalogue") / "run", batch_size=16, progress=False)
    return {
        kind: {c: scored[c][i] for c in ("difficulty", "difficulty_error", "rollouts")} for i, kind in enumerate(kinds)
    }


FAILED_ROWS = {
    "missing image": "image: image is missing (None)",
    "garbage image bytes": "image: image cannot be decoded (not a recognised image format)",
    "truncated image": "image: image cannot be decoded (OSError: image file is truncated)",
    "image path that does not exist": "image: image file not found (/no/such/digit.png)",
    "image path that is a folder": "image: image cannot be decoded (IsADirectoryError: [Errno 21] Is a directory: '/tmp')",
    "missing answer": "solution: answer is missing (None)",
    "empty answer": "solution: answer is an empty string",
    "empty prompt": "problem: prompt is empty",
    "missing prompt": "problem: prompt is missing (None)",
    "prompt longer than the context": (
        "problem: prompt is 628 tokens; with max_new_tokens=4 it exceeds the model's context of 512"
    ),
}


@pytest.mark.parametrize("kind", sorted(FAILED_ROWS))
def test_a_bad_row_fails_alone_with_its_reason(scored_catalogue, kind):
    assert scored_catalogue[kind]["difficulty"] is None
    assert scored_catalogue[kind]["difficulty_error"] == FAILED_ROWS[kind]


@pytest.mark.parametrize("kind", ["good", "CMYK JPEG", "16-bit grayscale", "palette with transparency", "huge image"])
def test_unusual_but_valid_images_are_converted_and_scored(scored_catalogue, kind):
    assert scored_catalogue[kind]["difficulty_error"] == ""
    assert 0.0 <= scored_catalogue[kind]["difficulty"] <= 1.0


def test_huge_images_are_downscaled_to_the_pixel_budget():
    image = load_image(_encoded(PILImage.new("RGB", (4000, 3000))), column="image", max_pixels=802_816)
    assert image.width * image.height <= 802_816 and image.size == (1034, 775)


def test_an_image_too_large_to_decode_safely_is_a_failed_row():
    bomb = _encoded(PILImage.new("1", (15_000, 15_000)))
    with pytest.raises(RowError, match="image is too large to decode safely"):
        load_image(bomb, column="image")


def test_a_duplicate_row_is_generated_once_and_shares_its_rollouts(scored_catalogue):
    assert scored_catalogue["duplicate of the good row"] == scored_catalogue["good"]


def test_non_string_answers_are_compared_as_text(tiny_vlm):
    dataset = Dataset.from_dict({"problem": ["Say 7"], "solution": [7]})
    scorer = score_difficulty(
        str(tiny_vlm), image_column=None, num_rollouts=2, max_new_tokens=2, verifier=lambda c, r: float(str(r) == "7")
    )
    assert dataset.map(scorer, batched=True)["difficulty"] == [0.0]


def test_list_answers_for_iou_are_scored_against_the_best_box_and_text_answers_fail_the_row(tiny_vlm):
    scorer = score_difficulty(str(tiny_vlm), image_column=None, verifier="iou", num_rollouts=2, max_new_tokens=2)
    boxes = Dataset.from_dict({"problem": ["Where?"], "solution": [[[0, 0, 4, 4], [2, 2, 9, 9]]]})
    scored = boxes.map(scorer, batched=True)
    assert scored["difficulty"] == [1.0] and scored["difficulty_error"] == [""]  # random text holds no box
    text = Dataset.from_dict({"problem": ["Where?"], "solution": ["a cat"]}).map(scorer, batched=True)
    assert text["difficulty"] == [None]
    assert text["difficulty_error"][0].startswith("solution: verifier 'iou' failed on this row (ValueError: reference")


def test_wrong_column_names_fail_at_once_listing_the_dataset_columns(tiny_vlm, digits):
    scorer = score_difficulty(str(tiny_vlm), prompt_column="question")
    with pytest.raises(
        ColumnNotFoundError,
        match="prompt_column='question' is not a column of the dataset; available columns: image, problem, solution",
    ):
        digits.map(scorer, batched=True)


def test_thresholds_out_of_order_are_refused():
    scored = Dataset.from_dict({"difficulty": [0.5]})
    with pytest.raises(ConfigError, match=r"min=0.9 is greater than max=0.1; thresholds must be in order"):
        filter_difficulty(scored, min=0.9, max=0.1)
    with pytest.raises(ConfigError, match=r"bins edges must be strictly increasing, got \[0.0, 0.75, 0.5, 1.0\]"):
        stratify(scored, bins=[0, 0.75, 0.5, 1])


def test_a_model_path_that_does_not_exist_names_the_path(tmp_path, digits):
    scorer = score_difficulty(str(tmp_path / "missing-model"))
    with pytest.raises(ModelLoadError, match="missing-model"):
        digits.select(range(1)).map(scorer, batched=True)


def test_an_output_path_that_is_a_file_is_refused_by_the_cli(tmp_path, tiny_vlm, digits):
    data = tmp_path / "digits.parquet"
    digits.select(range(2)).to_parquet(str(data))
    taken = tmp_path / "taken"
    taken.write_text("a file")
    result = CliRunner().invoke(app, ["score", str(data), "--model", str(tiny_vlm), "--out", str(taken)])
    assert result.exit_code == 2
    assert f"output '{taken}' is a file; pass a folder path for --out." in result.output


def test_fail_fast_turns_a_bad_row_into_an_immediate_error_on_the_cli(tmp_path, tiny_vlm, digits_with_bad_rows):
    data = tmp_path / "bad"
    digits_with_bad_rows.save_to_disk(str(data))
    result = CliRunner().invoke(
        app,
        ["score", str(data), "--model", str(tiny_vlm), "--out", str(tmp_path / "run"), "--fail-fast", "-q", "-k", "2"],
    )
    assert result.exit_code == 2
    assert "row 1: image: image is missing (None)" in result.output


def test_a_missing_image_file_does_not_stop_the_finished_run_from_saving(catalogue, scored_catalogue, tmp_path_factory):
    # scored_catalogue's run holds a row whose image path does not exist: the save still succeeded,
    # with the image column kept as raw {bytes, path} records that cast back to images.
    from datasets import load_from_disk

    run = next(p for p in tmp_path_factory.getbasetemp().glob("catalogue*/run"))
    saved = load_from_disk(str(run))
    assert saved.features["image"] == {"bytes": Value("binary"), "path": Value("string")}
    assert saved[4]["image"] == {"bytes": None, "path": "/no/such/digit.png"}
    assert saved.cast_column("image", Image())[0]["image"].size == (8, 8)
