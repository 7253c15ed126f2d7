"""Loading the families as users' folders are: without torchvision, and with one line when something is missing."""

from __future__ import annotations

import importlib.util
import json
import shutil

import pytest
from typer.testing import CliRunner

from difficulty_curation import score_difficulty
from difficulty_curation.cli import app
from difficulty_curation.demo import digits_dataset
from difficulty_curation.errors import ModelLoadError
from difficulty_curation.models import load_model_and_processor, load_processor
from difficulty_curation.runners.in_memory import score_dataset

needs_no_torchvision = pytest.mark.skipif(
    importlib.util.find_spec("torchvision") is not None, reason="checks the path taken where torchvision is absent"
)
VIDEO_FAMILIES = ["qwen2_5_vl", "qwen2_vl", "qwen3_vl", "internvl", "llava_onevision"]


@needs_no_torchvision
@pytest.mark.parametrize("family", VIDEO_FAMILIES)
def test_a_folder_with_a_video_processor_loads_for_images_without_torchvision(family, zoo):
    from transformers import AutoProcessor

    with pytest.raises(ImportError, match=r"(?i)torchvision"):  # the folder is what a real checkpoint is
        AutoProcessor.from_pretrained(str(zoo[family]))
    processor, _ = load_model_and_processor(str(zoo[family]), None, "cpu")
    assert (
        type(processor).__name__ == json.loads((zoo[family] / "processor_config.json").read_text())["processor_class"]
    )
    assert processor.chat_template is not None and processor.image_processor is not None


@pytest.fixture()
def broken_qwen(zoo, tmp_path):
    """A Qwen2.5-VL folder whose processor class cannot be told: only torchvision would load it."""
    folder = tmp_path / "qwen"
    shutil.copytree(zoo["qwen2_5_vl"], folder)
    config = json.loads((folder / "processor_config.json").read_text())
    config.pop("processor_class")
    (folder / "processor_config.json").write_text(json.dumps(config))
    return folder


@needs_no_torchvision
def test_a_processor_that_needs_torchvision_is_one_model_load_error_naming_it(broken_qwen):
    with pytest.raises(ModelLoadError, match="needs torchvision, which is not installed"):
        load_processor(str(broken_qwen))


@needs_no_torchvision
def test_an_environment_problem_stops_the_run_instead_of_failing_every_row(broken_qwen):
    rows = digits_dataset(num_rows=4)
    with pytest.raises(ModelLoadError, match="torchvision"):
        score_dataset(rows, score_difficulty(str(broken_qwen), max_new_tokens=2), batch_size=2, progress=False)


@needs_no_torchvision
def test_curate_score_reports_a_missing_package_in_one_line(broken_qwen, tmp_path):
    data = tmp_path / "digits.parquet"
    digits_dataset(num_rows=4).to_parquet(str(data))
    result = CliRunner().invoke(app, ["score", str(data), "--model", str(broken_qwen), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "torchvision" in lines[0] and "Traceback" not in result.output
