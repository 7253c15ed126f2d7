"""DC-SFT against SFT and GRPO in miniature: real digits, offline, on a CPU, many seeds, paired intervals.

    python examples/dc_sft_digits/run.py                    # the study: seeds 0-9, clean and noisy labels
    python examples/dc_sft_digits/run.py --prior --jobs 2   # the same from a pretrained prior (prior.py), + retention
    python examples/dc_sft_digits/run.py --report           # only rebuild results.md, the plots and the README tables
    python examples/dc_sft_digits/run.py --quick --out /tmp/q   # a minutes-long smoke run (the slow test)

Per seed: (1) build a tiny LLaVA from configs and cold-start it with full SFT on the first 400 training
digits; (2) score the other 1,037 training digits (the pool) once, 8 rollouts at temperature 0.9,
rollouts kept; (3) make the noisy pool: 15% of its labels replaced by a wrong digit (rows recorded)
and re-verify the same rollouts against those labels (no generation); (4) per condition (clean,
noisy) stratify into easy / medium / hard and train the cold start for the same number of optimizer
steps on seven arms: LoRA-SFT on all rows, easy, medium (SFT-M), hard, easy + medium (SFT-EM), and
LoRA-GRPO on all rows and on medium rows, rewarded by the scoring verifier; (5) evaluate every arm
and the cold start with greedy decoding on the 360 test digits (ID) and on two renditions of them
fixed in `difficulty_curation.demo` before any run: rotated 25 degrees and slanted (OOD).

`--prior` runs the same study a second time, each cold start beginning from one broadly pretrained
prior (`prior.py`) instead of random weights, and tests every model on the prior's own printed-digit
task too (retention); the report shows both conditions side by side.

Every setting is in `SETTINGS` (and `PRIOR_SETTINGS`) and fixed before the multi-seed run. Each (seed, condition) writes
`results/raw/seed<S>-<condition>.json` after every arm, so an interrupted run loses at most one arm
and resumes where it stopped; `--report` recomputes every table from those files alone.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import re
import shutil
import statistics
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from prior import PriorRecipe, ensure_prior, printed_digits

from difficulty_curation import audit_hard_rows, filter_difficulty, score_difficulty, score_to_dir, stratify
from difficulty_curation.demo import build_tiny_vlm, cold_start, digits_dataset, ensure_demo_model
from difficulty_curation.recipes.evaluate import evaluate
from difficulty_curation.recipes.grpo import GRPOOptions, grpo
from difficulty_curation.recipes.sft import SFTOptions, sft

HERE = Path(__file__).parent
CONDITIONS = ("clean", "noisy")
SFT_ARMS = ("SFT (all)", "easy", "medium (SFT-M)", "hard", "easy+medium (SFT-EM)")
GRPO_ARMS = ("GRPO (all)", "GRPO (medium)")
ARMS = (*SFT_ARMS, *GRPO_ARMS)
#: the paper's three contrasts (and hard - SFT), as (arm, minus arm)
CONTRASTS = (
    ("medium (SFT-M)", "SFT (all)"),
    ("easy+medium (SFT-EM)", "SFT (all)"),
    ("easy+medium (SFT-EM)", "GRPO (all)"),
    ("medium (SFT-M)", "GRPO (all)"),
    ("GRPO (medium)", "GRPO (all)"),
    ("hard", "SFT (all)"),
)


@dataclass(frozen=True)
class Settings:
    """Everything that determines the study's numbers; written into every raw result."""

    cold_start_rows: int = 400
    cold_start_steps: int = 400
    pool_rows: int = 1037  # training digits 400..1436
    test_rows: int | None = None  # all 360
    num_rollouts: int = 8
    rollout_temperature: float = 0.9
    max_new_tokens: int = 4
    steps: int = 150  # optimizer steps for every arm
    learning_rate: float = 1e-3  # every arm; far above the paper's 1e-5 (random-init model, seconds of training)
    sft_batch_size: int = 16  # rows per step
    grpo_batch_size: int = 4  # prompts per step, each with grpo_generations completions
    grpo_generations: int = 8
    grpo_temperature: float = 0.9
    grpo_beta: float = 0.04
    noise_fraction: float = 0.15
    ood_renditions: tuple[str, ...] = ("rotated", "slanted")


SETTINGS = Settings()
QUICK = replace(SETTINGS, cold_start_steps=20, pool_rows=64, test_rows=20, steps=2)


@dataclass(frozen=True)
class PriorSettings(Settings):
    """The second condition (`--prior`): every setting above, but the cold start begins from the prior
    (`prior.py`) instead of random weights, and every model is also tested on the prior's own task."""

    prior: PriorRecipe = field(default_factory=PriorRecipe)


PRIOR_SETTINGS = PriorSettings()
PRIOR_QUICK = PriorSettings(**{**asdict(QUICK), "prior": PriorRecipe(rows=256, steps=20, retention_rows=20)})


@dataclass(frozen=True)
class EqualPassesSettings(PriorSettings):
    """A follow-up (`--prior --equal-passes`): every SFT arm passes over its own rows as often as SFT (all)
    does in `steps` steps (fewer steps for a smaller bucket), as DC-SFT saves compute; no GRPO arms."""

    sft_steps: str = "equal passes"


def arm_steps(arm_rows: int, settings: Settings) -> int:
    """An arm's optimizer steps: `settings.steps`, or with equal passes that many scaled by the arm's share of the pool."""
    if isinstance(settings, EqualPassesSettings):
        return max(1, round(settings.steps * arm_rows / settings.pool_rows))
    return settings.steps


#: the held-out printed digits (the prior's own task), not out of distribution: what an arm keeps of the prior
RETENTION = "printed"


# --------------------------------------------------------------------------------------------- running


def run_seed(seed: int, settings: Settings, raw_dir: Path, work: Path) -> None:
    """Everything for one seed, both conditions, resuming from whatever `raw_dir` already holds."""
    results = {c: _load(raw_dir / f"seed{seed}-{c}.json", seed, c, settings) for c in CONDITIONS}
    if all(r["complete"] for r in results.values()):
        return
    cold = _cold_start(seed, settings, work)
    prior = ensure_prior(settings.prior) if isinstance(settings, PriorSettings) else None
    pool = digits_dataset(split="train").select(
        range(settings.cold_start_rows, settings.cold_start_rows + settings.pool_rows)
    )
    pool = pool.add_column("pool_index", list(range(len(pool))))
    noisy_pool, corrupted = _corrupt(pool, settings.noise_fraction, seed)
    scorer_options = dict(
        num_rollouts=settings.num_rollouts,
        temperature=settings.rollout_temperature,
        max_new_tokens=settings.max_new_tokens,
        seed=seed,
        keep_rollouts=True,
    )
    wall, cpu = time.perf_counter(), time.process_time()
    scored = {
        "clean": score_to_dir(pool, score_difficulty(str(cold), **scorer_options), work / "scored", progress=False)
    }
    scoring_cost = {"scoring_wall_s": time.perf_counter() - wall, "scoring_cpu_s": time.process_time() - cpu}
    # The rollout cache is verifier- and label-independent: the noisy pool re-uses every rollout.
    (work / "scored-noisy" / ".curate").mkdir(parents=True, exist_ok=True)
    shutil.copy2(work / "scored" / ".curate" / "rollouts.sqlite", work / "scored-noisy" / ".curate" / "rollouts.sqlite")
    noisy_scorer = score_difficulty(str(cold), **scorer_options)
    scored["noisy"] = score_to_dir(noisy_pool, noisy_scorer, work / "scored-noisy", progress=False, overwrite=True)
    tests = {"ID": digits_dataset(split="test", num_rows=settings.test_rows)}
    tests |= {
        name: digits_dataset(split="test", rendition=name, num_rows=settings.test_rows)
        for name in settings.ood_renditions
    }
    if prior is not None:
        tests[RETENTION] = printed_digits(settings.prior)
    cold_report = None
    for condition in CONDITIONS:
        result = results[condition]
        buckets = stratify(scored[condition])
        result["bucket_sizes"] = {name: len(part) for name, part in buckets.items()}
        if condition == "clean" and "scoring_wall_s" not in result:
            result.update(scoring_cost)  # the first, generating pass; a resumed one would undercount
        if condition == "noisy":
            result["noise"] = _noise_report(scored["noisy"], corrupted)
        if prior is not None and "prior (zero-shot)" not in result["accuracy"]:
            result["accuracy"]["prior (zero-shot)"] = _evaluate(prior, tests, settings)
        if "cold start" not in result["accuracy"]:
            cold_report = cold_report or _evaluate(cold, tests, settings)
            result["accuracy"]["cold start"] = cold_report
        training = {
            "SFT (all)": scored[condition],
            "easy": buckets["easy"],
            "medium (SFT-M)": buckets["medium"],
            "hard": buckets["hard"],
            "easy+medium (SFT-EM)": filter_difficulty(scored[condition], ["easy", "medium"]),
            "GRPO (all)": scored[condition],
            "GRPO (medium)": buckets["medium"],
        }
        for arm, rows in training.items():
            if arm in result["accuracy"] or arm in result["skipped"]:
                continue
            if arm in GRPO_ARMS and isinstance(settings, EqualPassesSettings):
                result["skipped"][arm] = "not part of the equal-passes follow-up"
                continue
            if len(rows) == 0:
                result["skipped"][arm] = "no rows"
                _save(raw_dir, result)
                continue
            folder = work / f"{condition}-{re.sub(r'[^a-z]+', '-', arm.lower()).strip('-')}"
            wall, cpu = time.perf_counter(), time.process_time()
            model = _train(arm, rows, cold, folder, settings, seed)
            result["train_wall_s"][arm] = time.perf_counter() - wall
            result["train_cpu_s"][arm] = time.process_time() - cpu
            result["train_rows"][arm] = len(rows)
            result.setdefault("train_steps", {})[arm] = arm_steps(len(rows), settings)
            result["accuracy"][arm] = _evaluate(model, tests, settings)
            shutil.rmtree(folder, ignore_errors=True)
            _save(raw_dir, result)
            accuracy = ", ".join(f"{k} {v:.1%}" for k, v in result["accuracy"][arm].items())
            print(f"seed {seed} {condition:5s} {arm:22s} {result['train_wall_s'][arm]:6.0f} s  {accuracy}", flush=True)
        result["complete"] = True
        _save(raw_dir, result)


def _cold_start(seed: int, settings: Settings, work: Path) -> Path:
    """Seed 0's full-size cold start is the `make demo` model (same build, same seed): reuse or cache it.

    With a prior, every seed's cold start begins from a copy of the one prior instead of random weights.
    """
    with_prior = isinstance(settings, PriorSettings)
    if seed == 0 and settings.cold_start_steps == SETTINGS.cold_start_steps and not with_prior:
        return ensure_demo_model()
    cold = work / "cold"
    if not (cold / "sft_options.json").exists():  # written last: a crashed cold start is redone
        shutil.rmtree(cold, ignore_errors=True)
        if with_prior:
            # the prior's own record and options stay behind: the cold start writes its own, last
            shutil.copytree(ensure_prior(settings.prior), cold, ignore=shutil.ignore_patterns("prior.json", "sft_*"))
        else:
            build_tiny_vlm(cold, seed=seed)
        cold_start(cold, steps=settings.cold_start_steps, num_rows=settings.cold_start_rows, seed=seed, progress=False)
    return cold


def _corrupt(pool: Any, fraction: float, seed: int) -> tuple[Any, dict[int, tuple[str, str]]]:
    """Replace `fraction` of the labels by a different digit; returns the pool and {row: (true, noisy)}."""
    rng = random.Random(f"noise-{seed}")
    rows = sorted(rng.sample(range(len(pool)), round(fraction * len(pool))))
    labels = list(pool["solution"])
    corrupted = {}
    for row in rows:
        wrong = rng.choice([d for d in "0123456789" if d != labels[row]])
        corrupted[row] = (labels[row], wrong)
        labels[row] = wrong
    return pool.remove_columns("solution").add_column("solution", labels), corrupted


def _noise_report(scored: Any, corrupted: dict[int, tuple[str, str]]) -> dict[str, Any]:
    """Where the corrupted rows land, and how well the hard-row audit finds them."""
    buckets = stratify(scored)
    landed = {name: sum(i in corrupted for i in part["pool_index"]) for name, part in buckets.items()}
    flagged = {row for group in audit_hard_rows(scored) for row in group.rows}
    pool_index = scored["pool_index"]
    flagged_pool = {pool_index[row] for row in flagged}
    hits = len(flagged_pool & set(corrupted))
    return {
        "corrupted_rows": {str(row): {"true": t, "noisy": n} for row, (t, n) in sorted(corrupted.items())},
        "corrupted_by_bucket": landed,
        "audit_flagged": len(flagged_pool),
        "audit_true_positives": hits,
        "audit_precision": hits / len(flagged_pool) if flagged_pool else None,
        "audit_recall": hits / len(corrupted) if corrupted else None,
    }


def _train(arm: str, rows: Any, cold: Path, folder: Path, settings: Settings, seed: int) -> Path:
    common = {"learning_rate": settings.learning_rate, "max_steps": arm_steps(len(rows), settings), "seed": seed}
    if arm in GRPO_ARMS:
        options = GRPOOptions(
            **common,
            num_generations=settings.grpo_generations,
            temperature=settings.grpo_temperature,
            beta=settings.grpo_beta,
            max_completion_length=settings.max_new_tokens,
            batch_size=settings.grpo_batch_size,
            logging_steps=10,
        )
        return grpo(rows, str(cold), folder, options=options, merge=True, progress=False, overwrite=True)
    options = SFTOptions(**common, batch_size=settings.sft_batch_size, logging_steps=50)
    return sft(rows, str(cold), folder, options=options, merge=True, progress=False, overwrite=True)


def _evaluate(model: Path, tests: dict[str, Any], settings: Settings) -> dict[str, float]:
    report = evaluate(str(model), tests, ood=set(settings.ood_renditions), max_new_tokens=settings.max_new_tokens)
    return {result.dataset: result.accuracy for result in report.results}


def _load(path: Path, seed: int, condition: str, settings: Settings) -> dict[str, Any]:
    if path.exists():
        result = json.loads(path.read_text())
        if result["settings"] != json.loads(json.dumps(asdict(settings))):
            raise SystemExit(f"{path} was made with other settings; move it away or use another --out.")
        return result
    return {
        "seed": seed,
        "condition": condition,
        "settings": asdict(settings),
        "complete": False,
        "accuracy": {},
        "skipped": {},
        "train_wall_s": {},
        "train_cpu_s": {},
        "train_rows": {},
        "machine": _machine(),
    }


def _machine() -> dict[str, Any]:
    """Where the seconds were measured: they compare arms within one machine, never across machines."""
    import platform

    import torch

    return {
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_at_start": os.getloadavg()[0],
    }


def _save(raw_dir: Path, result: dict[str, Any]) -> None:
    path = raw_dir / f"seed{result['seed']}-{result['condition']}.json"
    staging = path.with_suffix(".tmp")
    staging.write_text(json.dumps(result, indent=1))
    os.replace(staging, path)


# --------------------------------------------------------------------------------------------- reporting


def t_interval(values: list[float]) -> tuple[float, float, float] | None:
    """Mean and 95% Student-t interval; None for fewer than two values."""
    if len(values) < 2:
        return None
    from scipy.stats import t

    mean = statistics.mean(values)
    half = t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return mean, mean - half, mean + half


def load_raw(raw_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """condition -> raw results (complete or not), in seed order; all must share one settings record."""
    runs = [json.loads(p.read_text()) for p in sorted(raw_dir.glob("seed*-*.json"))]
    if len({json.dumps(r["settings"], sort_keys=True) for r in runs}) > 1:
        raise SystemExit(f"{raw_dir} mixes results made with different settings.")
    by_condition: dict[str, list[dict[str, Any]]] = {c: [] for c in CONDITIONS}
    for run in sorted(runs, key=lambda r: r["seed"]):
        by_condition[run["condition"]].append(run)
    return by_condition


def splits_of(settings: dict[str, Any]) -> list[str]:
    """The test sets of a study: ID, the OOD renditions and, with a prior, the retention test."""
    return ["ID", *settings["ood_renditions"], *([RETENTION] if "prior" in settings else [])]


def summary(by_condition: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Every number the report shows, from the raw results."""
    out: dict[str, Any] = {}
    for condition, runs in by_condition.items():
        splits = splits_of(runs[0]["settings"]) if runs else []
        arms = {}
        for arm in ("prior (zero-shot)", "cold start", *ARMS):
            arms[arm] = {}
            for split in splits:
                values = [r["accuracy"][arm][split] for r in runs if arm in r["accuracy"]]
                arms[arm][split] = {
                    "n": len(values),
                    "mean": statistics.mean(values) if values else None,
                    "ci95": (t_interval(values) or (None, None, None))[1:],
                }
        contrasts = {}
        for arm, minus in CONTRASTS:
            name = f"{arm} - {minus}"
            contrasts[name] = {}
            for split in splits:
                diffs = [
                    r["accuracy"][arm][split] - r["accuracy"][minus][split]
                    for r in runs
                    if arm in r["accuracy"] and minus in r["accuracy"]
                ]
                interval = t_interval(diffs)
                contrasts[name][split] = {
                    "n": len(diffs),
                    "per_seed": diffs,
                    "mean": statistics.mean(diffs) if diffs else None,
                    "ci95": interval[1:] if interval else (None, None),
                }
        sizes = [r["bucket_sizes"] for r in runs if "bucket_sizes" in r]
        mean_sizes = (
            {b: statistics.mean(z.get(b, 0) for z in sizes) for b in ("easy", "medium", "hard")} if sizes else {}
        )
        out[condition] = {
            "bucket_sizes_mean": mean_sizes,
            "seeds": [r["seed"] for r in runs],
            "complete_seeds": [r["seed"] for r in runs if r["complete"]],
            "arms": arms,
            "contrasts": contrasts,
        }
    clean = by_condition.get("clean", [])
    out["compute"] = _compute(clean)
    out["noise"] = _noise_summary(by_condition.get("noisy", []))
    return out


def _compute(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean wall-clock and CPU seconds per arm; DC-SFT counts the scoring pass."""

    def mean_of(key: str, arm: str) -> float | None:
        values = [r[key][arm] for r in runs if arm in r[key]]
        return statistics.mean(values) if values else None

    scoring = [r["scoring_wall_s"] for r in runs if "scoring_wall_s" in r]
    scoring_cpu = [r["scoring_cpu_s"] for r in runs if "scoring_cpu_s" in r]
    table = {arm: {"wall_s": mean_of("train_wall_s", arm), "cpu_s": mean_of("train_cpu_s", arm)} for arm in ARMS}
    table["scoring pass"] = {
        "wall_s": statistics.mean(scoring) if scoring else None,
        "cpu_s": statistics.mean(scoring_cpu) if scoring_cpu else None,
    }
    ratios = {}
    for dc in ("medium (SFT-M)", "easy+medium (SFT-EM)"):
        for clock in ("wall_s", "cpu_s"):
            dc_cost, grpo_cost = table[dc][clock], table["GRPO (all)"][clock]
            if dc_cost is not None and grpo_cost and table["scoring pass"][clock] is not None:
                ratios[f"{dc} + scoring / GRPO (all), {clock[:-2]}"] = (
                    dc_cost + table["scoring pass"][clock]
                ) / grpo_cost
    return {"seconds": table, "ratios": ratios, "n": len(scoring)}


def _noise_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    reports = [r["noise"] for r in runs if "noise" in r]
    if not reports:
        return {}
    total = sum(len(n["corrupted_rows"]) for n in reports)
    landed = {b: sum(n["corrupted_by_bucket"].get(b, 0) for n in reports) for b in ("easy", "medium", "hard")}
    sizes = {b: sum(r["bucket_sizes"].get(b, 0) for r in runs if "noise" in r) for b in ("easy", "medium", "hard")}
    precision = [n["audit_precision"] for n in reports if n["audit_precision"] is not None]
    recall = [n["audit_recall"] for n in reports if n["audit_recall"] is not None]
    return {
        "seeds": len(reports),
        "corrupted": total,
        "landed": landed,
        "bucket_sizes": sizes,
        "audit_flagged": sum(n["audit_flagged"] for n in reports),
        "audit_true_positives": sum(n["audit_true_positives"] for n in reports),
        "precision_mean": statistics.mean(precision) if precision else None,
        "recall_mean": statistics.mean(recall) if recall else None,
    }


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _signed(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:+.1f}"


def _interval_table(
    label: str, rows: dict[str, Any], splits: list[str], names: dict[str, str], number: Any, *, bold: bool
) -> list[str]:
    """A markdown table of mean [95% interval] per split; with `bold`, intervals that exclude zero in bold."""
    lines = [f"| {label} | n | " + " | ".join(names.get(s, s) for s in splits) + " |"]
    lines.append("| --- | ---: |" + " ---: |" * len(splits))
    for name, cells in rows.items():
        n = cells[splits[0]]["n"]
        if not n:
            continue
        lines.append(f"| {name} | {n} | " + " | ".join(_cell(cells[split], number, bold) for split in splits) + " |")
    return lines


def _cell(cell: dict[str, Any] | None, number: Any, bold: bool) -> str:
    """mean [95% interval]; with `bold`, in bold when the interval excludes zero; – when there is nothing."""
    if not cell or not cell["n"]:
        return "–"
    low, high = cell["ci95"]
    text = number(cell["mean"]) + (f" [{number(low)}, {number(high)}]" if low is not None else "")
    return f"**{text}**" if bold and low is not None and (low > 0 or high < 0) else text


SPLIT_NAMES = {"ID": "ID", "rotated": "OOD rotated 25°", "slanted": "OOD slanted", RETENTION: "printed (retention)"}


def side_by_side(without: dict[str, Any], with_prior: dict[str, Any], settings: dict[str, Any]) -> str:
    """The contrasts from random weights and from the prior in one table per label condition."""
    splits = ["ID", *settings["ood_renditions"]]
    lines = [
        "Paired per-seed differences, percentage points [95% t-interval], from random weights (**none**) and from "
        "the prior (**prior**); **bold** = the interval excludes zero. The last column is the prior's own "
        "printed-digit task (retention)."
    ]
    for condition in CONDITIONS:
        ours, theirs = without.get(condition), with_prior.get(condition)
        if not ours or not theirs:
            continue
        header = [f"{SPLIT_NAMES[s]}: {who}" for s in splits for who in ("none", "prior")] + ["printed: prior"]
        lines += [
            "",
            f"#### {condition} labels (n = seeds: none {len(ours['seeds'])}, prior {len(theirs['seeds'])})",
            "",
        ]
        lines += ["| contrast | " + " | ".join(header) + " |", "| --- |" + " ---: |" * len(header)]
        for name in ours["contrasts"]:
            cells = [
                _cell(part["contrasts"][name].get(split), _signed, True) for split in splits for part in (ours, theirs)
            ]
            cells.append(_cell(theirs["contrasts"][name].get(RETENTION), _signed, True))
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def markdown(result: dict[str, Any], settings: dict[str, Any], *, level: int = 3) -> str:
    """The report: per-arm accuracy, paired contrasts, noise, compute; its headings at `level`."""
    heading = "#" * level
    splits, names = splits_of(settings), SPLIT_NAMES
    steps, grpo = settings["steps"], ""
    if settings.get("sft_steps") == "equal passes":
        arms = (
            f"Every SFT arm passes over its own rows as often as SFT (all) does in {steps} steps "
            f"({steps} x rows / {settings['pool_rows']} steps; no GRPO arms), from the same cold start"
        )
    else:
        arms = f"Every arm: {steps} optimizer steps from the same cold start"
        grpo = (
            f"; GRPO {settings['grpo_batch_size']} prompts/step x {settings['grpo_generations']} generations, "
            f"temperature {settings['grpo_temperature']}, beta {settings['grpo_beta']}"
        )
    prior_line = ""
    if "prior" in settings:
        prior = settings["prior"]
        prior_line = (
            f"Every cold start begins from one prior (`prior.py`: {prior['steps']} full-SFT steps of "
            f"{prior['batch_size']} rows on {prior['rows']} printed digits, letters, symbols, dot counts and "
            f"digit comparisons, seed {prior['seed']}), not from random weights. **printed (retention)**: "
            f"{prior['retention_rows']} held-out printed digits, the prior's own task. "
        )
    lines = [
        f"{prior_line}{arms}, lr {settings['learning_rate']:g}; SFT {settings['sft_batch_size']} rows/step{grpo}. "
        "Greedy accuracy in %, mean over seeds [95% t-interval]; n = seeds with that arm finished."
    ]
    for condition in CONDITIONS:
        part = result.get(condition)
        if not part or not part["seeds"]:
            lines += ["", f"{heading} {condition} labels: no results yet"]
            continue
        title = (
            "clean labels" if condition == "clean" else f"noisy labels ({settings['noise_fraction']:.0%} of the pool)"
        )
        lines += ["", f"{heading} {title}: seeds {part['seeds']} (finished: {part['complete_seeds']})", ""]
        lines += _interval_table("arm", part["arms"], splits, names, _pct, bold=False)
        if part.get("bucket_sizes_mean"):
            sizes = ", ".join(f"{b} {n:.0f}" for b, n in part["bucket_sizes_mean"].items())
            lines += ["", f"Bucket sizes of the {settings['pool_rows']}-row pool, mean over seeds: {sizes}."]
        lines += [
            "",
            "Paired per-seed differences, percentage points [95% t-interval]; **bold** = the interval excludes zero.",
            "",
        ]
        lines += _interval_table("contrast", part["contrasts"], splits, names, _signed, bold=True)
    noise = result.get("noise") or {}
    if noise:
        landed, sizes = noise["landed"], noise["bucket_sizes"]
        lines += [
            "",
            f"{heading} Where the corrupted labels land ({noise['seeds']} seeds, {noise['corrupted']} corrupted rows)",
            "",
            "| bucket | corrupted rows | share of corrupted | share of bucket |",
            "| --- | ---: | ---: | ---: |",
        ]
        for bucket in ("easy", "medium", "hard"):
            share = landed[bucket] / noise["corrupted"] if noise["corrupted"] else 0
            of_bucket = landed[bucket] / sizes[bucket] if sizes[bucket] else 0
            lines.append(f"| {bucket} | {landed[bucket]} | {share:.1%} | {of_bucket:.1%} |")
        lines += [
            "",
            f"Hard-row audit (`audit_hard_rows`, agreement >= 0.5): flagged {noise['audit_flagged']} rows, "
            f"{noise['audit_true_positives']} of them corrupted; mean precision "
            f"{_pct(noise['precision_mean'])}%, mean recall {_pct(noise['recall_mean'])}% per seed.",
        ]
    compute = result.get("compute") or {}
    if compute.get("n"):
        lines += [
            "",
            f"{heading} Compute (clean condition, mean over {compute['n']} seeds; this machine, see README)",
            "",
            "| arm | wall-clock s | CPU s |",
            "| --- | ---: | ---: |",
        ]
        for arm, cost in compute["seconds"].items():
            if cost["wall_s"] is not None:
                lines.append(f"| {arm} | {cost['wall_s']:.0f} | {cost['cpu_s']:.0f} |")
        lines += [""] + [
            f"- {name}: **{ratio:.2f}** (paper, 7B on ImageNet: 53/261 = 0.20)"
            for name, ratio in compute["ratios"].items()
        ]
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], settings: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    splits = splits_of(settings)
    figure, panels = plt.subplots(1, 2, figsize=(12, 4), dpi=100, sharey=True)
    for axes, condition in zip(panels, CONDITIONS):
        part = result.get(condition)
        axes.set_title(f"{condition} labels")
        if not part:
            continue
        arms = [a for a, cells in part["arms"].items() if cells.get("ID", {}).get("n")]
        width = 0.8 / len(splits)
        for position, split in enumerate(splits):
            means = np.array([part["arms"][a][split]["mean"] for a in arms])
            lows = np.array(
                [
                    part["arms"][a][split]["ci95"][0] if part["arms"][a][split]["ci95"][0] is not None else m
                    for a, m in zip(arms, means)
                ]
            )
            highs = np.array(
                [
                    part["arms"][a][split]["ci95"][1] if part["arms"][a][split]["ci95"][1] is not None else m
                    for a, m in zip(arms, means)
                ]
            )
            x = np.arange(len(arms)) + position * width
            axes.bar(x, means, width, yerr=[means - lows, highs - means], capsize=2, label=split)
        axes.set_xticks(np.arange(len(arms)) + 0.4 - width / 2, [a.replace(" (", "\n(") for a in arms], fontsize=7)
        axes.set_ylim(0, 1)
    panels[0].set_ylabel("greedy accuracy (mean, 95% t-interval)")
    panels[0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


#: per study: its raw folder, its result and plot files, and its heading in the report
STUDIES = {
    "none": ("raw", "results.json", "accuracy.png", "From random weights (the first study)"),
    "prior": ("raw-prior", "results-prior.json", "accuracy-prior.png", "From the prior (`--prior`)"),
    "prior-passes": (
        "raw-prior-passes",
        "results-prior-passes.json",
        "accuracy-prior-passes.png",
        "From the prior, SFT arms at equal passes (`--prior --equal-passes`, a follow-up)",
    ),
}


def _study(args: argparse.Namespace) -> str:
    return "prior-passes" if args.equal_passes else "prior" if args.prior else "none"


def report(out: Path, readme: Path | None) -> str:
    """Rebuild results*.json, results.md, accuracy*.png (and the README block) from `out/raw*`."""
    parts: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for study, (raw, result_file, plot_file, _) in STUDIES.items():
        by_condition = load_raw(out / raw) if (out / raw).is_dir() else {}
        runs = [r for rs in by_condition.values() for r in rs]
        if runs:
            settings, result = runs[0]["settings"], summary(by_condition)
            (out / result_file).write_text(json.dumps({"settings": settings, **result}, indent=1))
            plot(result, settings, out / plot_file)
            parts[study] = settings, result
    if not parts:
        raise SystemExit(f"no raw results in {out}/raw*")
    if len(parts) == 1:
        ((settings, result),) = parts.values()
        text = markdown(result, settings)
    else:
        text = ""
        if "none" in parts and "prior" in parts:
            text = "### Side by side: without and with a prior\n\n" + side_by_side(
                parts["none"][1], parts["prior"][1], parts["prior"][0]
            )
        for study, (settings, result) in parts.items():
            text += f"\n### {STUDIES[study][3]}\n\n" + markdown(result, settings, level=4)
    (out / "results.md").write_text(text)
    if readme is not None and readme.exists():
        start, end = "<!-- results:start -->", "<!-- results:end -->"
        page = readme.read_text()
        if start in page and end in page:
            head, rest = page.split(start, 1)
            readme.write_text(head + start + "\n" + text + end + rest.split(end, 1)[1])
    return text


def run_in_processes(args: argparse.Namespace) -> None:
    """The seeds dealt round-robin to `args.jobs` copies of this script, one torch thread each.

    Each arm still runs whole in one process, so the compute ratios stay same-machine comparisons;
    torch threads are pinned to one so that the processes do not oversubscribe the cores.
    """
    import subprocess
    import sys

    groups = [args.seeds[job :: args.jobs] for job in range(args.jobs)]
    threads = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    common = ["--out", str(args.out), "--work", str(args.work), *(["--quick"] if args.quick else [])]
    common += ["--prior"] if args.prior else []
    common += ["--equal-passes"] if args.equal_passes else []
    processes = [
        subprocess.Popen(
            [sys.executable, __file__, "--seeds", *map(str, seeds), *common], env={**os.environ, **threads}
        )
        for seeds in groups
        if seeds
    ]
    failed = [process.args for process in processes if process.wait() != 0]
    if failed:
        raise SystemExit(f"{len(failed)} of {len(processes)} processes failed; rerun the same command to resume")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument(
        "--work",
        type=Path,
        default=Path(tempfile.gettempdir()) / "dc-sft-digits-work",
        help="scratch folder for models and scored pools (kept until a seed finishes, for resuming)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny pool, 2 steps: a smoke run, never the study")
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="run the seeds in this many processes side by side, one torch thread each (2 on a 2-core machine)",
    )
    parser.add_argument(
        "--prior",
        action="store_true",
        help="the second condition: cold-start from a broadly pretrained prior (built once, cached) instead of "
        "random weights; raw results in OUT/raw-prior",
    )
    parser.add_argument(
        "--equal-passes",
        action="store_true",
        help="with --prior, a follow-up: each SFT arm passes over its rows as often as SFT (all) does (fewer steps for "
        "smaller buckets), no GRPO arms; raw results in OUT/raw-prior-passes",
    )
    parser.add_argument("--report", action="store_true", help="only rebuild the report from OUT/raw*")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore", category=FutureWarning)  # library deprecation notices, once per arm
    from datasets.utils.logging import disable_progress_bar
    from transformers.utils import logging as transformers_logging

    disable_progress_bar()
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    readme = HERE / "README.md" if args.out.resolve() == (HERE / "results").resolve() else None
    if args.equal_passes and not args.prior:
        parser.error("--equal-passes is a follow-up of the prior condition: pass --prior too")
    settings = (PRIOR_QUICK if args.quick else PRIOR_SETTINGS) if args.prior else (QUICK if args.quick else SETTINGS)
    if args.equal_passes:
        settings = EqualPassesSettings(**{**asdict(settings), "prior": settings.prior})
    if isinstance(settings, PriorSettings) and not args.report:
        started = time.perf_counter()
        prior = ensure_prior(settings.prior, progress=not args.quick)  # before any process starts, on every core
        print(f"prior: {prior} ({time.perf_counter() - started:.0f} s)", flush=True)
    if args.jobs > 1 and not args.report:
        run_in_processes(args)
        print(report(args.out, readme))
        return
    if not args.report:
        raw_dir = args.out / STUDIES[_study(args)][0]
        raw_dir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        for seed in args.seeds:
            work = args.work / (("quick-" if args.quick else "") + f"{_study(args)}-seed{seed}")
            work.mkdir(parents=True, exist_ok=True)
            run_seed(seed, settings, raw_dir, work)
            shutil.rmtree(work, ignore_errors=True)
            print(f"seed {seed} done after {time.perf_counter() - started:.0f} s", flush=True)
            report(args.out, readme)
    print(report(args.out, readme))


if __name__ == "__main__":
    main()
