"""DC-SFT in miniature: the shape of the paper's experiment on real digits, offline, on a CPU.

    python examples/dc_sft_digits/run.py                 # 3 seeds, a few minutes on 2 cores
    python examples/dc_sft_digits/run.py --seeds 0 --steps 20 --out /tmp/quick

Per seed: (1) build a tiny LLaVA from configs and cold-start it with full SFT on the first 400
training digits; (2) score the other 1,037 training digits with 8 rollouts at temperature 0.9;
(3) stratify into easy / medium / hard; (4) LoRA-SFT the cold-started model for the same number
of steps on: all rows (SFT), easy, medium (the paper's SFT-M), hard, easy + medium (SFT-EM);
(5) evaluate each, and the cold start itself, with greedy decoding on the 360 test digits (ID)
and on the same test digits rotated by 25 degrees (OOD). Writes results.md, results.json and
accuracy.png to --out. Seed 0's cold start is the `make demo` model, cached and reused.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from transformers.utils import logging as transformers_logging

from difficulty_curation import filter_difficulty, score_difficulty, score_to_dir, stratify
from difficulty_curation.demo import build_tiny_vlm, cold_start, digits_dataset, ensure_demo_model
from difficulty_curation.recipes.evaluate import EvalReport, evaluate
from difficulty_curation.recipes.sft import SFTOptions, sft

COLD_START_ROWS = 400
OOD_RENDITION = "rotated"
ARMS = ("SFT (all)", "easy", "medium (SFT-M)", "hard", "easy+medium (SFT-EM)")


def run_seed(
    seed: int, work: Path, *, steps: int, learning_rate: float
) -> tuple[dict[str, EvalReport], dict[str, int]]:
    """Steps 1-5 for one seed; returns the evaluation of every arm and the bucket sizes."""
    # Seed 0's cold start is the `make demo` model (same build, same seed): reuse or cache it.
    cold = ensure_demo_model() if seed == 0 else cold_start(build_tiny_vlm(work / "cold", seed=seed), seed=seed)
    pool = digits_dataset(split="train").select(range(COLD_START_ROWS, 1437))
    scorer = score_difficulty(str(cold), num_rollouts=8, temperature=0.9, max_new_tokens=4, seed=seed)
    scored = score_to_dir(pool, scorer, work / "scored", progress=False)
    buckets = stratify(scored)
    training = {
        "SFT (all)": scored,
        "easy": buckets["easy"],
        "medium (SFT-M)": buckets["medium"],
        "hard": buckets["hard"],
        "easy+medium (SFT-EM)": filter_difficulty(scored, ["easy", "medium"]),
    }
    tests = {
        "ID": digits_dataset(split="test"),
        "OOD": digits_dataset(split="test", rendition=OOD_RENDITION),
    }
    reports = {"cold start": evaluate(str(cold), tests, ood={"OOD"}, max_new_tokens=4)}
    options = SFTOptions(learning_rate=learning_rate, max_steps=steps, batch_size=16, seed=seed, logging_steps=50)
    for arm, rows in training.items():
        if len(rows) == 0:
            logging.warning("seed %d: arm %r has no rows; skipped", seed, arm)
            continue
        model = sft(rows, str(cold), work / arm.split()[0], options=options, merge=True)
        reports[arm] = evaluate(str(model), tests, ood={"OOD"}, max_new_tokens=4)
    return reports, {name: len(part) for name, part in buckets.items()}


def summarise(per_seed: list[dict[str, EvalReport]]) -> dict[str, dict[str, list[float]]]:
    """arm -> {"ID": [accuracy per seed], "OOD": [...]}."""
    table: dict[str, dict[str, list[float]]] = {}
    for reports in per_seed:
        for arm, report in reports.items():
            for result in report.results:
                table.setdefault(arm, {}).setdefault(result.dataset, []).append(result.accuracy)
    return table


def markdown(
    table: dict[str, dict[str, list[float]]], sizes: list[dict[str, int]], seeds: list[int], steps: int
) -> str:
    def cell(values: list[float]) -> str:
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.1%} ± {spread:.1%}"

    lines = [
        f"Greedy accuracy, mean ± standard deviation over seeds {seeds}; every arm trained {steps} LoRA steps.",
        "",
        "| trained on | ID (test digits) | OOD (rotated 25°) | per-seed OOD |",
        "| --- | ---: | ---: | --- |",
    ]
    for arm in ("cold start", *ARMS):
        if arm in table:
            per_seed = ", ".join(f"{v:.1%}" for v in table[arm]["OOD"])
            lines.append(f"| {arm} | {cell(table[arm]['ID'])} | {cell(table[arm]['OOD'])} | {per_seed} |")
    lines += [
        "",
        "Bucket sizes of the 1,037-row pool per seed: "
        + "; ".join(
            f"seed {seed}: " + ", ".join(f"{k} {v}" for k, v in size.items()) for seed, size in zip(seeds, sizes)
        )
        + ".",
    ]
    return "\n".join(lines) + "\n"


def plot(table: dict[str, dict[str, list[float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    arms = [arm for arm in ("cold start", *ARMS) if arm in table]
    figure, axes = plt.subplots(figsize=(8, 3.8), dpi=100)
    for offset, split in ((-0.2, "ID"), (0.2, "OOD")):
        means = [statistics.mean(table[a][split]) for a in arms]
        errors = [statistics.stdev(table[a][split]) if len(table[a][split]) > 1 else 0 for a in arms]
        axes.bar(np.arange(len(arms)) + offset, means, 0.4, yerr=errors, capsize=3, label=split)
    axes.set_xticks(np.arange(len(arms)), [a.replace(" (", "\n(") for a in arms], fontsize=8)
    axes.set_ylabel("greedy accuracy")
    axes.set_ylim(0, 1)
    axes.legend()
    axes.set_title("DC-SFT in miniature: digits, OOD = rotated 25°")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=150, help="LoRA steps for every arm")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results"))
    args = parser.parse_args()
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    started = time.perf_counter()
    per_seed, sizes = [], []
    for seed in args.seeds:
        work = Path(tempfile.mkdtemp(prefix=f"dc-sft-seed{seed}-"))
        try:
            reports, size = run_seed(seed, work, steps=args.steps, learning_rate=args.learning_rate)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        per_seed.append(reports)
        sizes.append(size)
        print(f"seed {seed} done after {time.perf_counter() - started:.0f} s", flush=True)
    table = summarise(per_seed)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.md").write_text(markdown(table, sizes, args.seeds, args.steps))
    (args.out / "results.json").write_text(
        json.dumps({"seeds": args.seeds, "steps": args.steps, "bucket_sizes": sizes, "accuracy": table}, indent=1)
    )
    plot(table, args.out / "accuracy.png")
    print((args.out / "results.md").read_text())
    print(f"total {time.perf_counter() - started:.0f} s; written to {args.out}")


if __name__ == "__main__":
    main()
