"""The training recipes on the paper's model family and one other: a LoRA step through `curate sft` and
`curate grpo` (vision tower and projector adapted too, as in the paper), read back by `curate eval`."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from difficulty_curation.cli import app
from difficulty_curation.demo import digits_dataset

#: Family -> the name fragments of its vision tower and of its vision-to-text projector. Gemma 3's projector
#: is a plain weight matrix, not a `Linear` layer: LoRA on all linear layers cannot adapt it (None here).
FAMILIES = {"qwen2_5_vl": ("visual.blocks", "visual.merger"), "gemma3": ("vision_tower", None)}


def curate(*arguments) -> str:
    result = CliRunner().invoke(app, [str(a) for a in arguments], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def rows_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("rows") / "digits.parquet"
    digits = digits_dataset(num_rows=8).map(lambda row: {"image": row["image"].convert("RGB").resize((28, 28))})
    digits.to_parquet(str(path))
    return path


def adapted_modules(out) -> list[str]:
    return [name for name in load_file(str(out / "adapter_model.safetensors")) if "lora_A" in name]


def changed(before, after) -> list[str]:
    """Weights that differ; names as transformers 5 writes them (the zoo's Gemma 3 has the published ones)."""
    old, new = (
        {name.replace("vision_tower.vision_model.", "vision_tower."): weight for name, weight in weights.items()}
        for weights in (load_file(str(before / "model.safetensors")), load_file(str(after / "model.safetensors")))
    )
    return [name for name in old if name in new and not torch.equal(old[name], new[name])]


def evaluated(model, rows_file, tmp_path) -> dict:
    out = tmp_path / f"eval-{model.parent.name}"
    curate("eval", model, "--dataset", f"id={rows_file}", "--max-new-tokens", 4, "--out", out)
    results = json.loads((out / "results.json").read_text())
    return results[0]["results"][0] if isinstance(results, list) else results


@pytest.mark.matrix("SFT")
@pytest.mark.parametrize("family", FAMILIES)
def test_curate_sft_takes_a_lora_step_on_vision_and_text_and_eval_reads_it_back(family, zoo, rows_file, tmp_path):
    vision, projector = FAMILIES[family]
    out = tmp_path / "sft"
    curate(
        "sft",
        rows_file,
        "--model",
        zoo[family],
        "--out",
        out,
        "--merge",
        "--max-steps",
        2,
        "--batch-size",
        4,
        "--learning-rate",
        5e-3,
        "--lora-rank",
        4,
    )
    modules = adapted_modules(out)
    assert any(vision in name for name in modules) and any("language_model" in name for name in modules), modules
    moved = changed(zoo[family], out / "merged")
    assert any(vision in name for name in moved) and any(vision not in name and "layers" in name for name in moved), (
        moved
    )
    if projector is not None:
        assert any(projector in name for name in modules) and any(projector in name for name in moved)
    result = evaluated(out / "merged", rows_file, tmp_path)
    assert result["total"] == 8 and result["failed"] == 0


@pytest.mark.matrix("GRPO")
@pytest.mark.parametrize("family", FAMILIES)
def test_curate_grpo_takes_a_lora_step_and_eval_reads_it_back(family, zoo, rows_file, tmp_path):
    out = tmp_path / "grpo"
    curate(
        "grpo",
        rows_file,
        "--model",
        zoo[family],
        "--out",
        out,
        "--merge",
        "--max-steps",
        1,
        "--batch-size",
        2,
        "--num-generations",
        2,
        "--max-completion-length",
        4,
        "--learning-rate",
        5e-3,
        "--lora-rank",
        4,
        "--quiet",
    )
    vision, projector = FAMILIES[family]
    modules = adapted_modules(out)
    assert any(vision in name for name in modules), modules
    assert projector is None or any(projector in name for name in modules), modules
    assert len((out / "rollouts.jsonl").read_text().splitlines()) == 2 * 2
    result = evaluated(out / "merged", rows_file, tmp_path)
    assert result["total"] == 8 and result["failed"] == 0
