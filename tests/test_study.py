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
