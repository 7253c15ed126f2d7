"""The DC-SFT study in miniature, end to end (slow: run with `pytest -m slow`)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

STUDY = Path(__file__).parents[1] / "examples" / "dc_sft_digits" / "run.py"
ARMS = ("SFT (all)", "easy", "medium (SFT-M)", "hard", "easy+medium (SFT-EM)", "GRPO (all)", "GRPO (medium)")


@pytest.mark.slow
def test_the_quick_study_runs_every_arm_in_both_conditions_and_resumes(tmp_path):
    options = ["--quick", "--seeds", "1", "2", "--out", str(tmp_path), "--work", str(tmp_path / "work")]
    command = [sys.executable, str(STUDY), *options]
    # the two seeds in two processes side by side (--jobs), then the same command again in one
    subprocess.run([*command, "--jobs", "2"], check=True, timeout=3600, capture_output=True)
    raw = {p.name: json.loads(p.read_text()) for p in (tmp_path / "raw").glob("*.json")}
    assert sorted(raw) == ["seed1-clean.json", "seed1-noisy.json", "seed2-clean.json", "seed2-noisy.json"]
    for result in raw.values():
        assert result["complete"]
        assert set(result["accuracy"]) | set(result["skipped"]) == {"cold start", *ARMS}
        assert sum(result["bucket_sizes"].values()) == 64
    noise = raw["seed1-noisy.json"]["noise"]
    assert len(noise["corrupted_rows"]) == round(0.15 * 64) == sum(noise["corrupted_by_bucket"].values())
    assert all(row["true"] != row["noisy"] for row in noise["corrupted_rows"].values())
    table = (tmp_path / "results.md").read_text()
    assert "| easy+medium (SFT-EM) - GRPO (all) | 2 |" in table and "OOD slanted" in table
    assert (tmp_path / "accuracy.png").read_bytes()[:4] == b"\x89PNG"
    # a second run finds everything finished and only rebuilds the report from the raw files
    again = subprocess.run(command, check=True, timeout=600, capture_output=True, text=True)
    assert " s  ID " not in again.stdout
    assert (tmp_path / "results.md").read_text() == table


@pytest.mark.slow
def test_the_quick_study_with_a_prior_reports_retention_and_both_conditions_side_by_side(tmp_path):
    common = ["--quick", "--out", str(tmp_path), "--work", str(tmp_path / "work")]
    subprocess.run([sys.executable, str(STUDY), *common, "--seeds", "1"], check=True, timeout=3600, capture_output=True)
    prior = [sys.executable, str(STUDY), *common, "--prior", "--seeds", "1", "2", "--jobs", "2"]
    subprocess.run(prior, check=True, timeout=3600, capture_output=True)
    raw = {p.name: json.loads(p.read_text()) for p in (tmp_path / "raw-prior").glob("*.json")}
    assert sorted(raw) == ["seed1-clean.json", "seed1-noisy.json", "seed2-clean.json", "seed2-noisy.json"]
    for result in raw.values():
        assert result["complete"] and result["settings"]["prior"]["steps"] == 20
        assert set(result["accuracy"]) | set(result["skipped"]) == {"prior (zero-shot)", "cold start", *ARMS}
        for accuracy in result["accuracy"].values():
            assert set(accuracy) == {"ID", "rotated", "slanted", "printed"}
    # one prior for every seed: its zero-shot accuracy is the same in each result
    assert len({json.dumps(r["accuracy"]["prior (zero-shot)"]) for r in raw.values()}) == 1
    # the first study's raw results are untouched by the second condition
    assert sorted(p.name for p in (tmp_path / "raw").glob("*.json")) == ["seed1-clean.json", "seed1-noisy.json"]
    table = (tmp_path / "results.md").read_text()
    assert "### Side by side: without and with a prior" in table
    assert "| hard - SFT (all) |" in table and "printed (retention)" in table
    assert "### From random weights (the first study)" in table and "### From the prior (`--prior`)" in table
    assert (tmp_path / "accuracy-prior.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "results-prior.json").read_text())["settings"]["prior"]["rows"] == 256
    # the equal-passes follow-up: each SFT arm's steps scale with its rows; no GRPO arms
    passes = [sys.executable, str(STUDY), *common, "--prior", "--equal-passes", "--seeds", "1"]
    subprocess.run(passes, check=True, timeout=3600, capture_output=True)
    for result in (json.loads(p.read_text()) for p in (tmp_path / "raw-prior-passes").glob("*.json")):
        assert result["complete"] and result["settings"]["sft_steps"] == "equal passes"
        assert set(result["skipped"]) >= {"GRPO (all)", "GRPO (medium)"}
        for arm, steps in result["train_steps"].items():
            assert steps == max(1, round(2 * result["train_rows"][arm] / 64)), arm
    assert "SFT arms at equal passes" in (tmp_path / "results.md").read_text()
    refused = subprocess.run([sys.executable, str(STUDY), "--equal-passes"], capture_output=True, text=True)
    assert refused.returncode == 2 and "pass --prior too" in refused.stderr
