"""Each export is loaded back by its consumer's own code: TRL's SFTTrainer, ms-swift's `load_dataset`,
LLaMA-Factory's dataset loader and verl's `RLHFDataset`.

ms-swift, LLaMA-Factory and verl pin versions that clash with ours, so each lives in its own
environment under `.venv-consumers/NAME` (`make consumers`); a checker script in `tests/consumers/`
runs there and prints what the consumer loaded as JSON. Run with `make test-exports`.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from datasets import load_dataset
from export_fixtures import SYSTEM_PROMPT, pixels_digest, scored_digits

from difficulty_curation.exports import export_dataset

pytestmark = pytest.mark.exports

ROOT = Path(__file__).resolve().parents[1]
CONSUMERS = Path(os.environ.get("CURATE_CONSUMERS", ROOT / ".venv-consumers"))
CHECKERS = ROOT / "tests" / "consumers"
MEDIUM_ROWS = [4, 5, 6, 7]


@pytest.fixture(scope="module")
def scored(digits):
    return scored_digits(digits)


def _moved_export(scored, tmp_path: Path, format: str) -> Path:
    """Export the medium rows, then move the folder: what the consumer reads must not depend on where it was written."""
    export_dataset(scored, tmp_path / "written", format=format, buckets="medium")
    return Path(shutil.move(tmp_path / "written", tmp_path / "moved"))


def _run_checker(name: str, *arguments: str, cwd: Path, checker: str | None = None) -> dict:
    python = CONSUMERS / name / "bin" / "python"
    if not python.exists():
        pytest.fail(f"{python} is missing: run `make consumers` to install {name} in its own environment.")
    env = {**os.environ, "PYTHONPATH": str(CHECKERS), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env["HF_HOME"] = env["MODELSCOPE_CACHE"] = str(cwd / "cache")
    completed = subprocess.run(
        [str(python), str(CHECKERS / f"check_{checker or name}.py"), *arguments],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _expected(scored, row: int = MEDIUM_ROWS[0]) -> dict:
    return {
        "rows": len(MEDIUM_ROWS),
        "system": SYSTEM_PROMPT,
        "prompt": "<image>" + scored[row]["problem"],
        "answer": scored[row]["solution"],
        "image": pixels_digest(scored[row]["image"]),
    }


def test_ms_swift_loads_the_swift_export(scored, tmp_path):
    export = _moved_export(scored, tmp_path, "swift")
    loaded = _run_checker("swift", str(export), cwd=tmp_path)
    assert loaded == _expected(scored)


@pytest.mark.matrix("ms-swift template", family="qwen2_5_vl")
def test_ms_swift_qwen2_5_vl_template_encodes_the_swift_export(scored, zoo, tmp_path):
    """ms-swift's own `qwen2_5_vl` template, built from the zoo's Qwen2.5-VL folder, encodes an exported row for training."""
    export = _moved_export(scored, tmp_path, "swift")
    loaded = _run_checker("swift", str(export), str(zoo["qwen2_5_vl"]), cwd=tmp_path, checker="swift_template")
    row = scored[MEDIUM_ROWS[0]]
    assert loaded["rows"] == len(MEDIUM_ROWS)
    assert (loaded["model_type"], loaded["template"]) == ("qwen2_5_vl", "Qwen2_5VLTemplate")
    # One image: its `<|image_pad|>` expanded to one token per merged patch, as the model's vision tower emits.
    [[t, h, w]] = loaded["image_grid_thw"]
    image_tokens = t * h * w // loaded["merge_size"] ** 2
    assert image_tokens > 0
    assert loaded["image_tokens"] == loaded["mm_token_type_ids"] == image_tokens
    assert loaded["pixel_rows"] == t * h * w
    assert loaded["text"] == (
        f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n"
        f"<|im_start|>user\n<|vision_start|>{'<|image_pad|>' * image_tokens}<|vision_end|>{row['problem']}<|im_end|>\n"
        f"<|im_start|>assistant\n{row['solution']}<|im_end|>\n"
    )
    # The loss falls on the answer and the end of the turn only.
    assert loaded["labels"] == f"{row['solution']}<|im_end|>\n"


def test_llamafactory_loads_the_llamafactory_export(scored, tmp_path):
    export = _moved_export(scored, tmp_path, "llamafactory")
    loaded = _run_checker("llamafactory", str(export), "curated", cwd=tmp_path)
    assert loaded == _expected(scored)


def test_verl_loads_the_verl_export(scored, tiny_vlm, tmp_path):
    export = _moved_export(scored, tmp_path, "verl")
    loaded = _run_checker("verl", str(export), str(tiny_vlm), cwd=tmp_path)
    extra_info = loaded.pop("extra_info")
    assert loaded.pop("data_source") == "digits/train"
    assert loaded == _expected(scored)
    assert extra_info == {"index": 4, "difficulty": 0.25, "num_correct": 3, "num_rollouts": 4}


def test_trl_trains_one_step_on_the_trl_export(scored, tiny_vlm, tmp_path):
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from trl import SFTConfig, SFTTrainer

    export = _moved_export(scored, tmp_path, "trl")
    train = load_dataset("parquet", data_files=str(export / "train.parquet"))["train"]
    assert len(train) == len(MEDIUM_ROWS)
    assert train[0]["prompt"][-1]["content"][-1]["text"] == scored[MEDIUM_ROWS[0]]["problem"]
    assert train[0]["completion"][0]["content"][0]["text"] == scored[MEDIUM_ROWS[0]]["solution"]
    assert pixels_digest(train[0]["images"][0]) == pixels_digest(scored[MEDIUM_ROWS[0]]["image"])
    args = SFTConfig(
        output_dir=str(tmp_path / "sft"),
        max_steps=1,
        per_device_train_batch_size=2,
        report_to=[],
        save_strategy="no",
        max_length=None,
        completion_only_loss=True,
        use_cpu=True,
        dataloader_num_workers=0,
    )
    trainer = SFTTrainer(
        model=AutoModelForImageTextToText.from_pretrained(tiny_vlm),
        args=args,
        train_dataset=train,
        processing_class=AutoProcessor.from_pretrained(tiny_vlm),
    )
    trainer.train()
    assert trainer.state.global_step == 1
