"""Score a local parquet file with the library API, then keep the medium rows (the paper's SFT-M set).

Runs offline on the bundled demo model and digits:

    .venv/bin/python examples/score_local_parquet.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from datasets import load_dataset

from difficulty_curation import filter_difficulty, score_difficulty, stratify
from difficulty_curation.demo import digits_dataset, ensure_demo_model
from difficulty_curation.stats import summarize


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="dc-example-"))
    digits_dataset(split="train", num_rows=256).to_parquet(str(workdir / "train.parquet"))

    ds = load_dataset("parquet", data_files=str(workdir / "train.parquet"), split="train")
    scorer = score_difficulty(str(ensure_demo_model()), num_rollouts=8, temperature=0.9, verifier="exact")
    scored = ds.map(scorer, batched=True, batch_size=64)

    medium = filter_difficulty(scored, "medium")
    buckets = stratify(scored)
    print({name: len(part) for name, part in buckets.items()}, "medium rows kept:", len(medium))
    print(summarize(scored).buckets)


if __name__ == "__main__":
    main()
