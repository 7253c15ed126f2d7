"""The DC-SFT study in miniature, end to end (slow: run with `pytest -m slow`)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

STUDY = Path(__file__).parents[1] / "examples" / "dc_sft_digits" / "run.py"


@pytest.mark.slow
def test_the_miniature_study_runs_end_to_end(tmp_path):
    command = [sys.executable, str(STUDY), "--seeds", "1", "--steps", "10", "--out", str(tmp_path)]
    subprocess.run(command, check=True, timeout=1800, capture_output=True)
    table = (tmp_path / "results.md").read_text()
    for arm in ("cold start", "SFT (all)", "easy", "medium (SFT-M)", "hard", "easy+medium (SFT-EM)"):
        assert f"| {arm} |" in table
    results = json.loads((tmp_path / "results.json").read_text())
    cold = results["accuracy"]["cold start"]
    assert cold["ID"][0] > 0.3  # the cold start reads digits well above chance (10%)
    assert sum(results["bucket_sizes"][0].values()) == 1037
    assert (tmp_path / "accuracy.png").read_bytes()[:4] == b"\x89PNG"
