"""Write the model-family compatibility matrix (docs/compatibility.md) from `pytest --matrix FILE` results.

Usage: python tests/render_matrix.py RESULTS.json [MORE.json ...] --out docs/compatibility.md
A cell is "yes" when its test passed, else the reason its test gave; a cell no test covered says so.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from zoo import BUILDERS

COLUMNS = [
    "loads",
    "scores",
    "batch-invariant",
    "shared prefill",
    "adaptive exact",
    "vLLM native",
    "SFT",
    "GRPO",
    "ms-swift template",
]
NOT_RUN = {
    "vLLM native": "not run: the vLLM tier runs Qwen2.5-VL, Qwen3-VL and Gemma 3 natively",
    "SFT": "not run: the recipes are tested on Qwen2.5-VL, Gemma 3 and LLaVA",
    "GRPO": "not run: the recipes are tested on Qwen2.5-VL, Gemma 3 and LLaVA",
    "ms-swift template": "not run: the exports tier encodes with ms-swift's Qwen2.5-VL template",
}
#: Cells no test can fill, with the reason measured.
EXPLAINED = {
    ("llava", "vLLM native"): (
        "no: vLLM's LLaVA reads vision_tower.vision_model.* weight names, which transformers 5 no longer writes "
        "(tested); runs with model_impl=transformers"
    ),
}
NOTES = {
    (
        "gemma3",
        "SFT",
    ): "; LoRA adapts the vision tower, but Gemma 3's projector is a plain matrix (train it with --full)",
    ("gemma3", "GRPO"): "; as for SFT, the projector is trained only with full fine-tuning",
}


def render(results: dict[str, dict[str, str]]) -> str:
    lines = [
        "# Model families: what is tested on each",
        "",
        "Written by `make matrix` from the test run (`pytest --matrix`), not by hand: each cell is the result of",
        "its test on a tiny random-weight build of the family (`tests/zoo.py`: transformers' own config and",
        "processor classes, a tokenizer trained on the fly with the family's special tokens, saved and loaded",
        "as a user's model). Invariance tests sample (T=0.9) on padded batches: prompts of several lengths,",
        "images of several sizes, a lone long row, text-only rows beside image rows, several batches in a row.",
        "",
        "| family | " + " | ".join(COLUMNS) + " |",
        "| --- | " + " | ".join("---" for _ in COLUMNS) + " |",
    ]
    for family in BUILDERS:
        cells = results.get(family, {})
        row = []
        for column in COLUMNS:
            cell = cells.get(column) or EXPLAINED.get((family, column)) or NOT_RUN.get(column, "not run")
            row.append(cell + NOTES.get((family, column), "") if cell == "yes" else cell)
        lines.append(f"| {family} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("results", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    arguments = parser.parse_args()
    merged: dict[str, dict[str, str]] = {}
    for path in arguments.results:
        if path.exists():
            for family, cells in json.loads(path.read_text()).items():
                merged.setdefault(family, {}).update(cells)
    arguments.out.write_text(render(merged))


if __name__ == "__main__":
    main()
