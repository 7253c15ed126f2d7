"""Rollout throughput: the paper's loop vs our scorer vs the bare engine call, in one process.

    python benchmarks/rollouts.py                      # CPU, bundled tiny VLM, both workloads (several minutes)
    python benchmarks/rollouts.py --markdown bench.md --doc   # also write the table / docs/performance.md's block
    python benchmarks/rollouts.py --model Qwen/Qwen2.5-VL-3B-Instruct --device cuda --rows 1024

Three workloads on the same model and digits, in the same run:
  one-token     the digit question, answered with one token and </s> (prefill-bound), `exact` verifier;
  decode-bound  the same question, but the model's end-of-sequence token is switched off, so every
                rollout runs the full --long-max-new-tokens (128) like a reasoning trace; the verifier
                reads the answer from the start of the completion. Its first token is the same draw
                as in the one-token workload, so its buckets are just as mixed.
  paper-mix     one-token rows picked so that --medium-share (0.375, the paper's 7B split: 3,598 of
                9,600 rows) of them are medium at full k: a pool of digits is scored once with full k
                on the same engine before anything is measured, and the rows are taken from it in
                pool order (`paper_mix_rows`). Adaptive can only save on medium rows.
Per workload:
(a) paper loop: k sequential passes over the data, `generate` at batch 4, one sample per call
    (every prompt is preprocessed and prefilled k times);
(b) ours: `score_dataset` with the transformers backend (dataset decoding, prompts, sampling,
    verification and Arrow output included);
(c) bare engine: one `processor(...)` + `generate(num_return_sequences=k)` + decode per batch of
    pre-decoded images, nothing else;
(d) ours with adaptive=True: rollouts saved, and agreement of its buckets with (b)'s.
(b), (c) and (d) run --repeats times, interleaved, and the fastest of each counts (the machine may
be shared); (a) runs once. Prints seconds, rows/s, rollouts/s, peak memory and the ratios.

    python benchmarks/rollouts.py --vllm               # in the vLLM environment (make install-vllm)

runs the vLLM rows instead, on one started engine (start-up timed and reported on its own), per
workload: (e) ours: `score_dataset` with the vLLM backend (one `n=k` request per row, seeded row_seed);
(f) bare n=k: bare `LLM.generate` with one `SamplingParams(n=k, seed=row_seed)` request per row, same
prompts and batches, nothing else (the same draws as (e)); (f1) bare `LLM.generate` with one seeded n=1
request per rollout (the backend's request shape before windows); (g) ours with adaptive=True (windows
of 4 rollouts, the next only while a row is undecided). Then -k 32 --adaptive against -k 8 and -k 32
full draws (--large-k), on the paper-mix rows where that workload runs. The prefix cache is on and
emptied before each run.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shlex
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

RUN_LABELS = {
    "a_paper_loop": "(a) paper loop",
    "b_ours": "(b) ours",
    "c_bare_engine": "(c) bare engine",
    "d_ours_adaptive": "(d) ours, adaptive",
}
BLOCK_START = "<!-- benchmarks/rollouts.py: start -->"
BLOCK_END = "<!-- benchmarks/rollouts.py: end -->"
#: The markers of the vLLM rows' block (`--vllm --doc`), on the same page.
VLLM_BLOCK = ("<!-- benchmarks/rollouts.py --vllm: start -->", "<!-- benchmarks/rollouts.py --vllm: end -->")
#: The page whose benchmark block `--doc` replaces when given no path.
DEFAULT_DOC = "docs/performance.md"


class PeakMemory:
    """Peak resident memory (CPU, sampled every 5 ms) or peak allocated CUDA memory during a block."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.peak_bytes = 0

    def __enter__(self) -> PeakMemory:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        else:
            self._running = True
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        page = os.sysconf("SC_PAGE_SIZE")
        while self._running:
            with open("/proc/self/statm") as handle:
                self.peak_bytes = max(self.peak_bytes, int(handle.read().split()[1]) * page)
            time.sleep(0.005)

    def __exit__(self, *_: Any) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            self.peak_bytes = torch.cuda.max_memory_allocated()
        else:
            self._running = False
            self._thread.join()


def timed(device: str, run: Callable[[], Any]) -> tuple[Any, float, int]:
    with PeakMemory(device) as memory:
        started = time.perf_counter()
        result = run()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
    return result, seconds, memory.peak_bytes


def leading_answer(completion: str, reference: Any) -> float:
    """1.0 when the completion starts with the reference: the answer of an answer-then-explanation trace."""
    return float(completion.strip().startswith(str(reference).strip()))


@dataclass
class Workload:
    name: str
    rows: int
    max_new_tokens: int
    stops_at_eos: bool
    verifier: Any
    description: str


def synthetic_verifier(completion: str, reference: Any) -> float:
    """For random-weight models (benchmarks/gpu.sh): right with a probability set by the row's digit
    (0-3: 0.95, 4-6: 0.5, 7-9: 0.05), drawn from a hash of the completion, so buckets are mixed as a
    trained model's would be. The same completion is always judged the same."""
    import hashlib

    digit = int(str(reference).strip()[-1]) if str(reference).strip()[-1:].isdigit() else 0
    chance = 0.95 if digit <= 3 else 0.5 if digit <= 6 else 0.05
    draw = int.from_bytes(hashlib.sha256(str(completion).encode()).digest()[:4], "big") / 2**32
    return float(draw < chance)


def resized(dataset: Any, size: int | None) -> Any:
    """The digit images resized to `size` x `size` pixels (real image sizes; None: as they are, 8 x 8)."""
    if not size:
        return dataset
    return dataset.map(lambda row: {"image": row["image"].convert("RGB").resize((size, size))})


def paper_mix_rows(difficulty: list[float], rows: int, medium_share: float) -> list[int]:
    """Indices of `rows` pool rows, in pool order, of which round(rows * medium_share) are medium at full k.

    `difficulty` is the pool scored once with full k, before any measurement: the workload is fixed
    by it, and its buckets at full k are exactly the share asked for.
    """
    from difficulty_curation.transforms import bucket_of

    medium = [i for i, value in enumerate(difficulty) if bucket_of(value) == "medium"]
    other = [i for i, value in enumerate(difficulty) if bucket_of(value) != "medium"]
    wanted = round(rows * medium_share)
    if len(medium) < wanted or len(other) < rows - wanted:
        raise SystemExit(
            f"paper-mix: the pool of {len(difficulty)} rows has {len(medium)} medium and {len(other)} other rows; "
            f"{rows} rows at {medium_share:.1%} medium need {wanted} and {rows - wanted}: pass a smaller --mix-rows"
        )
    return sorted(medium[:wanted] + other[: rows - wanted])


#: Rows of the digits train split, the most the paper-mix workload's pool takes (4 x its rows).
PAPER_MIX_POOL = 1400


def machine_description(device: str) -> dict[str, Any]:
    """What the numbers were measured on: CPU model, usable cores, load, library versions."""
    import transformers

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    described = {
        "cpu": cpu,
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "device": device,
    }
    if device.startswith("cuda"):
        described["gpu"] = torch.cuda.get_device_name()
    return described


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def run_workload(workload: Workload, engine: Any, args: argparse.Namespace) -> dict[str, Any]:
    """(a)-(d) for one workload on one loaded engine; returns its results."""
    from difficulty_curation import score_difficulty
    from difficulty_curation.demo import digits_dataset
    from difficulty_curation.engines.base import render_chat
    from difficulty_curation.prompts import build_request
    from difficulty_curation.runners.in_memory import score_dataset
    from difficulty_curation.transforms import bucket_of
    from difficulty_curation.verifiers import get_verifier

    k = args.num_rollouts
    model = engine.config.model
    options = {"num_rollouts": k, "max_new_tokens": workload.max_new_tokens, "verifier": workload.verifier}
    if workload.name == "paper-mix":  # picked from a pool scored once with full k, before measuring
        pool = digits_dataset(split="train", num_rows=PAPER_MIX_POOL)
        pool_scorer = score_difficulty(model, **options)
        pool_scorer.engine = engine
        engine.rollout = pool_scorer.config.rollout
        scored = score_dataset(pool, pool_scorer, batch_size=args.batch_size, progress=False)
        dataset = pool.select(paper_mix_rows(scored["difficulty"], workload.rows, args.medium_share))
    else:
        dataset = digits_dataset(split="train", num_rows=workload.rows)
    config = score_difficulty(model, **options).config
    processor, hf_model, tokenizer = engine.processor, engine.model, engine.tokenizer
    engine.rollout = config.rollout  # this workload's answer length, on the one loaded model
    eos = hf_model.generation_config.eos_token_id
    hf_model.generation_config.eos_token_id = eos if workload.stops_at_eos else None
    rollout = config.rollout
    sampling = {"do_sample": True, "temperature": rollout.temperature, "top_p": rollout.top_p, "top_k": rollout.top_k}
    sampling |= {"max_new_tokens": rollout.max_new_tokens, "pad_token_id": tokenizer.pad_token_id}
    verify = get_verifier(workload.verifier)

    rows = list(dataset)  # decoded images, for the runs that have no dataset machinery
    texts = [
        render_chat(processor, build_request(row, config.columns, max_pixels=config.max_pixels).messages)
        for row in rows
    ]
    images = [[row["image"].convert("RGB")] for row in rows]

    def encode(start: int, stop: int) -> Any:
        return processor(text=texts[start:stop], images=images[start:stop], padding=True, return_tensors="pt").to(
            args.device
        )

    def paper_loop() -> list[int]:
        correct = [0] * len(rows)
        with torch.no_grad():
            for _ in range(k):
                for start in range(0, len(rows), args.paper_batch_size):
                    stop = min(start + args.paper_batch_size, len(rows))
                    inputs = encode(start, stop)
                    output = hf_model.generate(**inputs, num_return_sequences=1, **sampling)
                    answers = tokenizer.batch_decode(
                        output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True
                    )
                    for offset, answer in enumerate(answers):
                        correct[start + offset] += int(verify(answer, rows[start + offset]["solution"]) >= 0.5)
        return correct

    def bare_engine() -> list[str]:
        completions: list[str] = []
        with torch.no_grad():
            for start in range(0, len(rows), args.batch_size):
                inputs = encode(start, min(start + args.batch_size, len(rows)))
                output = hf_model.generate(**inputs, num_return_sequences=k, **sampling)
                completions += tokenizer.batch_decode(
                    output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True
                )
        return completions

    def ours(adaptive: bool = False) -> Any:
        run_scorer = score_difficulty(model, adaptive=adaptive, **options)
        run_scorer.engine = engine
        return score_dataset(dataset, run_scorer, batch_size=args.batch_size, progress=False)

    runs = {"b_ours": ours, "c_bare_engine": bare_engine, "d_ours_adaptive": lambda: ours(adaptive=True)}
    try:
        bare_engine()  # warm-up: first-call allocations and lazy initialisation stay out of every timing
        seconds: dict[str, list[float]] = {name: [] for name in ["a_paper_loop", *runs]}
        peaks: dict[str, int] = {}
        outputs: dict[str, Any] = {}
        if not args.skip_paper_loop:
            outputs["a_paper_loop"], spent, peaks["a_paper_loop"] = timed(args.device, paper_loop)
            seconds["a_paper_loop"].append(spent)
        names = list(runs)
        for repeat in range(args.repeats):
            for name in names[repeat % len(names) :] + names[: repeat % len(names)]:  # rotate the order
                outputs[name], spent, peak = timed(args.device, runs[name])
                seconds[name].append(spent)
                peaks[name] = max(peaks.get(name, 0), peak)
    finally:
        hf_model.generation_config.eos_token_id = eos

    results: dict[str, Any] = {"rows": len(rows), "max_new_tokens": rollout.max_new_tokens}
    results["description"] = workload.description
    for name, spent in seconds.items():
        if not spent:
            continue
        drawn = sum(outputs[name]["num_rollouts"]) if name in ("b_ours", "d_ours_adaptive") else len(rows) * k
        best = min(spent)
        results[name] = {
            "seconds": round(best, 3),
            "all_seconds": [round(s, 3) for s in spent],
            "rows_per_s": round(len(rows) / best, 1),
            "rollouts_per_s": round(drawn / best, 1),
            "rollouts": drawn,
            "peak_memory_mb": round(peaks[name] / 2**20, 1),
        }
    lengths = [len(tokenizer(c, add_special_tokens=False)["input_ids"]) for c in outputs["c_bare_engine"]]
    results["bare_engine_mean_answer_tokens"] = round(sum(lengths) / len(lengths), 1)
    full, adaptive = outputs["b_ours"], outputs["d_ours_adaptive"]
    agree = sum(bucket_of(f) == bucket_of(a) for f, a in zip(full["difficulty"], adaptive["difficulty"]))
    if "a_paper_loop" in results:
        results["paper_loop_over_ours"] = round(results["a_paper_loop"]["seconds"] / results["b_ours"]["seconds"], 2)
    results["ours_over_bare_engine"] = round(results["b_ours"]["seconds"] / results["c_bare_engine"]["seconds"], 3)
    results["adaptive_over_full"] = round(results["d_ours_adaptive"]["seconds"] / results["b_ours"]["seconds"], 3)
    results["adaptive_rollouts_saved"] = round(
        1 - results["d_ours_adaptive"]["rollouts"] / results["b_ours"]["rollouts"], 3
    )
    results["adaptive_bucket_agreement"] = round(agree / len(rows), 4)
    results["buckets_full_k"] = {
        b: sum(bucket_of(v) == b for v in full["difficulty"]) for b in ("easy", "medium", "hard")
    }
    return results


TARGETS = {  # the issues' targets, checked in the printout
    "one-token": {"adaptive_over_full": 0.95, "ours_over_bare_engine": 1.10},
    "decode-bound": {"adaptive_over_full": 0.85, "ours_over_bare_engine": 1.10},
    "paper-mix": {"adaptive_over_full": 0.85, "ours_over_bare_engine": 1.10},
}


def print_results(results: dict[str, Any]) -> None:
    for name, workload in results["workloads"].items():
        print(f"\n== {name}: {workload['rows']} rows, up to {workload['max_new_tokens']} new tokens ==")
        print(f"{'run':<20}{'seconds':>9}{'rows/s':>9}{'rollouts/s':>12}{'rollouts':>10}{'peak MB':>10}  all seconds")
        for run, label in RUN_LABELS.items():
            if run in workload:
                r = workload[run]
                print(
                    f"{label:<20}{r['seconds']:>9.2f}{r['rows_per_s']:>9.1f}{r['rollouts_per_s']:>12.1f}"
                    f"{r['rollouts']:>10}{r['peak_memory_mb']:>10.1f}  {r['all_seconds']}"
                )
        targets = TARGETS.get(name, {})
        if "paper_loop_over_ours" in workload:
            print(f"(a)/(b) paper loop over ours:   {workload['paper_loop_over_ours']}x")
        print(
            f"(b)/(c) ours over bare engine:  {workload['ours_over_bare_engine']}x"
            f"  (target <= {targets.get('ours_over_bare_engine', '-')})"
        )
        print(
            f"(d)/(b) adaptive over full k:   {workload['adaptive_over_full']}x"
            f"  (target <= {targets.get('adaptive_over_full', '-')})"
        )
        print(
            f"adaptive: {workload['adaptive_rollouts_saved']:.1%} fewer rollouts, "
            f"{workload['adaptive_bucket_agreement']:.2%} same bucket as full k; buckets {workload['buckets_full_k']}; "
            f"mean answer {workload['bare_engine_mean_answer_tokens']} tokens"
        )
    print(
        f"\nmachine: {results['machine']}; load average before {results['load_before']}, after {results['load_after']}"
    )


def machine_words(machine: dict[str, Any]) -> str:
    """The machine of a run, in words: CPU, cores, torch (and the GPU where there is one)."""
    where = f"{machine['cpu']}, {machine['usable_cores']} usable cores, torch {machine['torch']}"
    return f"{machine['gpu']} ({where})" if "gpu" in machine else where


def markdown(results: dict[str, Any], command: str) -> str:
    """The performance page's table and ratios, from one run's results."""
    machine = results["machine"]
    where = machine_words(machine)
    lines = [
        f"Measured with `{command}` on {where}, transformers {machine['transformers']}; "
        f"k={results['num_rollouts']}, batch {results['batch_size']}, fastest of {results['repeats']} "
        f"interleaved repeats for (b)-(d), one run of (a). Load average (1, 5, 15 min) before the run "
        f"{results['load_before']}, after {results['load_after']} (the benchmark's own two threads count "
        "towards it; a 1-minute load well above the core count means other jobs ran beside it).",
        "",
        "| workload | run | seconds | rows/s | rollouts/s | rollouts | peak RSS MB |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, workload in results["workloads"].items():
        for run, label in RUN_LABELS.items():
            if run in workload:
                r = workload[run]
                lines.append(
                    f"| {name} | {label} | {r['seconds']:.2f} | {r['rows_per_s']:.1f} | {r['rollouts_per_s']:.1f} "
                    f"| {r['rollouts']} | {r['peak_memory_mb']:.1f} |"
                )
    lines += [
        "",
        "| workload | rows | answer tokens (mean) | buckets at full k (easy/medium/hard) | (a)/(b) paper loop / ours "
        "| (b)/(c) ours / bare engine | (d)/(b) adaptive / full k | rollouts saved | same bucket |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, workload in results["workloads"].items():
        buckets = workload["buckets_full_k"]
        paper = workload.get("paper_loop_over_ours")
        lines.append(
            f"| {name} | {workload['rows']} | {workload['bare_engine_mean_answer_tokens']} "
            f"| {buckets['easy']}/{buckets['medium']}/{buckets['hard']} "
            f"| {'-' if paper is None else f'{paper}x'} | {workload['ours_over_bare_engine']}x "
            f"| {workload['adaptive_over_full']}x | {workload['adaptive_rollouts_saved']:.1%} "
            f"| {workload['adaptive_bucket_agreement']:.2%} |"
        )
    return "\n".join(lines) + "\n"


def replace_doc_block(doc: str, table: str, markers: tuple[str, str] = (BLOCK_START, BLOCK_END)) -> None:
    """Replace the text between the benchmark markers of the markdown page `doc` with `table`."""
    start, end = markers
    with open(doc) as handle:
        text = handle.read()
    if start not in text or end not in text:
        raise SystemExit(f"{doc} has no '{start}' ... '{end}' block to replace")
    before, rest = text.split(start, 1)
    _, after = rest.split(end, 1)
    with open(doc, "w") as handle:
        handle.write(f"{before}{start}\n{table}{end}{after}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model folder or Hub id [default: the bundled demo VLM]")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--rows", type=int, default=512, help="rows of the one-token workload")
    parser.add_argument("--long-rows", type=int, default=128, help="rows of the decode-bound workload")
    parser.add_argument("--long-max-new-tokens", type=int, default=128)
    parser.add_argument("--mix-rows", type=int, default=256, help="rows of the paper-mix workload")
    parser.add_argument(
        "--medium-share", type=float, default=0.375, help="paper-mix: share of rows medium at full k (paper: 37.5%%)"
    )
    parser.add_argument("--workloads", default="one-token,decode-bound,paper-mix", help="comma-separated")
    parser.add_argument(
        "--image-size", type=int, help="with --vllm: resize the digit images to this many pixels a side"
    )
    parser.add_argument(
        "--verifier",
        choices=["exact", "synthetic"],
        default="exact",
        help="with --vllm: the short-answer workloads' verifier; synthetic for random-weight models (gpu.sh)",
    )
    parser.add_argument("--batch-size", type=int, default=64, help="rows per generate call for (b) and (c)")
    parser.add_argument("--paper-batch-size", type=int, default=4)
    parser.add_argument("--num-rollouts", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=16, help="answer limit of the one-token workload")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats of (b), (c), (d); best counts")
    parser.add_argument("--skip-paper-loop", action="store_true", help="leave out (a), the slowest run")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--markdown", help="also write the results as a markdown table here")
    parser.add_argument(
        "--doc",
        nargs="?",
        const=DEFAULT_DOC,
        help=f"replace the benchmark block of this markdown page with the table [alone: {DEFAULT_DOC}]",
    )
    parser.add_argument("--vllm", action="store_true", help="run the vLLM rows (e), (f), (g) instead")
    parser.add_argument(
        "--large-k", type=int, default=32, help="with --vllm: k of the adaptive-at-large-k rows (0: leave them out)"
    )
    parser.add_argument(
        "--engine-option", action="append", default=[], help="KEY=VALUE for vllm.LLM (with --vllm); repeatable"
    )
    args = parser.parse_args()
    if args.vllm:
        vllm_rows(args)
        return

    from transformers.utils import logging as transformers_logging

    from difficulty_curation import score_difficulty
    from difficulty_curation.demo import ensure_demo_model
    from difficulty_curation.engines.transformers import TransformersEngine

    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    torch.set_num_threads(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    model = args.model or str(ensure_demo_model())
    engine = TransformersEngine(score_difficulty(model).config, device=args.device)  # one model for every run
    workloads = {
        "one-token": Workload(
            "one-token",
            args.rows,
            args.max_new_tokens,
            True,
            "exact",
            "the digit question, answered with one token (prefill-bound)",
        ),
        "decode-bound": Workload(
            "decode-bound",
            args.long_rows,
            args.long_max_new_tokens,
            False,
            leading_answer,
            "the same question with end-of-sequence off: every answer runs the full length",
        ),
        "paper-mix": Workload(
            "paper-mix",
            args.mix_rows,
            args.max_new_tokens,
            True,
            "exact",
            f"one-token rows, {args.medium_share:.1%} of them medium at full k (the paper's 7B split)",
        ),
    }
    chosen = [name.strip() for name in args.workloads.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in workloads]
    if unknown:
        parser.error(f"unknown workload(s) {unknown}; choose from {list(workloads)}")

    results: dict[str, Any] = {"model": model, "num_rollouts": args.num_rollouts, "batch_size": args.batch_size}
    results |= {"repeats": args.repeats, "machine": machine_description(args.device), "load_before": load_average()}
    results["workloads"] = {name: run_workload(workloads[name], engine, args) for name in chosen}
    results["load_after"] = load_average()
    print_results(results)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)
    if args.markdown or args.doc:
        table = markdown(results, shlex.join(["python", "benchmarks/rollouts.py", *sys.argv[1:]]))
        if args.markdown:
            with open(args.markdown, "w") as handle:
                handle.write(table)
        if args.doc:
            replace_doc_block(args.doc, table)


def prefix_cache_counts(llm: Any) -> tuple[float, float]:
    """(prefix-cache queries, hits) in tokens so far, from vLLM's metrics (needs disable_log_stats=False)."""
    totals = {"vllm:prefix_cache_queries": 0.0, "vllm:prefix_cache_hits": 0.0}
    for metric in llm.get_metrics():
        if metric.name in totals:
            totals[metric.name] += float(getattr(metric, "value", 0) or 0)
    return totals["vllm:prefix_cache_queries"], totals["vllm:prefix_cache_hits"]


def vllm_rows(args: argparse.Namespace) -> None:
    """The vLLM rows, one started engine for all, per workload (one-token, decode-bound):

    (e) ours: `score_dataset` on the vLLM backend, one `n=k` request per row seeded row_seed (full k);
    (f) bare n=k: bare `LLM.generate` with one `SamplingParams(n=k, seed=row_seed)` request per row, same
        prompts and batches: the same draws as (e), nothing else;
    (f1) bare `LLM.generate`, one seeded n=1 request per rollout (the backend's shape before windows);
    (g) ours with adaptive=True: windows of rollouts, the next only while a row is undecided.
    Then, on the paper-mix rows (else one-token), k=--large-k adaptive against k=--num-rollouts and
    k=--large-k full draws.
    The prefix cache is on and emptied before each run; runs rotate order over --repeats, fastest counts.
    """
    import functools
    import tempfile

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    os.environ.setdefault("VLLM_CACHE_ROOT", tempfile.mkdtemp(prefix="vllm-cache-"))
    from difficulty_curation import score_difficulty
    from difficulty_curation.config import parse_engine_options
    from difficulty_curation.demo import digits_dataset, ensure_demo_model
    from difficulty_curation.engines.base import render_chat
    from difficulty_curation.engines.sampling import rollout_seed
    from difficulty_curation.engines.vllm import VLLMEngine, build_vllm_prompt, sampling_kwargs
    from difficulty_curation.prompts import build_request
    from difficulty_curation.runners.in_memory import score_dataset
    from difficulty_curation.transforms import bucket_of

    model = args.model or str(ensure_demo_model())
    engine_options = {"enforce_eager": True, "enable_prefix_caching": True, "disable_log_stats": False}
    if args.model is None:  # the demo LLaVA, saved by transformers 5: see docs/backends.md on model_impl
        engine_options["model_impl"] = "transformers"
    engine_options |= parse_engine_options(args.engine_option)
    k = args.num_rollouts
    base = score_difficulty(model, backend="vllm", engine_options=engine_options)
    started = time.perf_counter()
    engine = VLLMEngine(base.config)
    startup_seconds = time.perf_counter() - started
    from vllm import SamplingParams
    from vllm import __version__ as vllm_version

    results: dict[str, Any] = {
        "model": model,
        "backend": "vllm",
        "engine_options": engine.engine_options,
        "num_rollouts": k,
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "engine_startup_seconds": round(startup_seconds, 1),
        "machine": machine_description("cuda" if torch.cuda.is_available() else "cpu"),
        "vllm": vllm_version,
        "load_before": load_average(),
        "workloads": {},
    }
    short_answer: Any = synthetic_verifier if args.verifier == "synthetic" else "exact"
    workloads = {
        "one-token": (args.rows, args.max_new_tokens, True, short_answer),
        "decode-bound": (args.long_rows, args.long_max_new_tokens, False, leading_answer),
        "paper-mix": (args.mix_rows, args.max_new_tokens, True, short_answer),
    }
    chosen = [name.strip() for name in args.workloads.split(",") if name.strip()]

    def scorer_for(workload: str, num_rollouts: int, adaptive: bool = False) -> Any:
        _, max_new_tokens, stops_at_eos, verifier = workloads[workload]
        options = {"num_rollouts": num_rollouts, "max_new_tokens": max_new_tokens, "verifier": verifier}
        run_scorer = score_difficulty(
            model, backend="vllm", engine_options=engine_options, adaptive=adaptive, **options
        )
        run_engine = copy.copy(engine)  # the started engine, sampling as this run says
        run_engine.config = run_scorer.config
        if not stops_at_eos:  # decode-bound: every rollout runs max_new_tokens, as a long reasoning trace does
            run_engine._sampling_params = functools.partial(SamplingParams, ignore_eos=True)
        run_scorer.engine = run_engine
        return run_scorer

    def timed_runs(runs: dict[str, Callable[[], Any]]) -> tuple[dict[str, Any], dict[str, list[float]], dict]:
        outputs: dict[str, Any] = {}
        seconds: dict[str, list[float]] = {name: [] for name in runs}
        hit_rates: dict[str, float] = {}
        names = list(runs)
        for repeat in range(args.repeats):
            for name in names[repeat % len(names) :] + names[: repeat % len(names)]:  # rotate the order
                engine.llm.reset_prefix_cache()
                queries, hits = prefix_cache_counts(engine.llm)
                started = time.perf_counter()
                outputs[name] = runs[name]()
                seconds[name].append(time.perf_counter() - started)
                after_queries, after_hits = prefix_cache_counts(engine.llm)
                if after_queries > queries:
                    hit_rates[name] = round((after_hits - hits) / (after_queries - queries), 3)
        return outputs, seconds, hit_rates

    def workload_rows(workload: str) -> Any:
        num_rows = workloads[workload][0]
        if workload != "paper-mix":
            return resized(digits_dataset(split="train", num_rows=num_rows), args.image_size)
        pool_rows = min(PAPER_MIX_POOL, 4 * num_rows)  # scored once, before measuring
        pool = resized(digits_dataset(split="train", num_rows=pool_rows), args.image_size)
        scored = score_dataset(pool, scorer_for(workload, k), batch_size=args.batch_size, progress=False)
        return pool.select(paper_mix_rows(scored["difficulty"], num_rows, args.medium_share))

    mix_rows = None
    for workload in chosen:
        num_rows, max_new_tokens, stops_at_eos, _ = workloads[workload]
        dataset = workload_rows(workload)
        if workload == "paper-mix":
            mix_rows = dataset
        config = scorer_for(workload, k).config
        requests = [build_request(row, config.columns, max_pixels=config.max_pixels) for row in dataset]
        prompts = [build_vllm_prompt(render_chat(engine.processor, r.messages), r.images) for r in requests]
        rollout = config.rollout
        n_k_params = [
            SamplingParams(
                **{**sampling_kwargs(rollout, seed=rollout_seed(rollout.seed, r.content_hash, 0)), "n": k},
                ignore_eos=not stops_at_eos,
            )
            for r in requests
        ]

        def bare_n_k(prompts: list = prompts, n_k_params: list = n_k_params) -> list[list[str]]:
            completions: list[list[str]] = []
            for start in range(0, len(prompts), args.batch_size):
                stop = start + args.batch_size
                outputs = engine.llm.generate(prompts[start:stop], n_k_params[start:stop], use_tqdm=False)
                completions += [[c.text for c in sorted(o.outputs, key=lambda c: c.index)] for o in outputs]
            return completions

        per_rollout_prompts = [prompt for prompt in prompts for _ in range(k)]
        per_rollout_params = [
            SamplingParams(
                **sampling_kwargs(rollout, seed=rollout_seed(rollout.seed, r.content_hash, j)),
                ignore_eos=not stops_at_eos,
            )
            for r in requests
            for j in range(k)
        ]

        def bare_per_rollout(prompts: list = per_rollout_prompts, params: list = per_rollout_params) -> None:
            step = args.batch_size * k
            for start in range(0, len(prompts), step):
                engine.llm.generate(prompts[start : start + step], params[start : start + step], use_tqdm=False)

        def ours(
            num_rollouts: int = k, adaptive: bool = False, workload: str = workload, dataset: Any = dataset
        ) -> Any:
            run = scorer_for(workload, num_rollouts, adaptive)
            return score_dataset(dataset, run, batch_size=args.batch_size, progress=False)

        runs: dict[str, Callable[[], Any]] = {
            "e_ours": ours,
            "f_bare_n_k": bare_n_k,
            "f1_bare_per_rollout": bare_per_rollout,
            "g_ours_adaptive": lambda: ours(adaptive=True),
        }
        bare_n_k()  # warm-up
        outputs, seconds, hit_rates = timed_runs(runs)
        block: dict[str, Any] = {"rows": num_rows, "max_new_tokens": max_new_tokens, "prefix_cache_hit_rate": hit_rates}
        for name in runs:
            drawn = sum(outputs[name]["num_rollouts"]) if name[0] in "eg" else num_rows * k
            best = min(seconds[name])
            block[name] = {
                "seconds": round(best, 3),
                "all_seconds": [round(x, 3) for x in seconds[name]],
                "rollouts": drawn,
                "rollouts_per_s": round(drawn / best, 1),
            }
        full, adaptive = outputs["e_ours"], outputs["g_ours_adaptive"]
        agree = sum(bucket_of(f) == bucket_of(a) for f, a in zip(full["difficulty"], adaptive["difficulty"]))
        block["ours_over_n_k"] = round(block["e_ours"]["seconds"] / block["f_bare_n_k"]["seconds"], 3)
        block["bare_per_rollout_over_n_k"] = round(
            block["f1_bare_per_rollout"]["seconds"] / block["f_bare_n_k"]["seconds"], 3
        )
        block["adaptive_over_full"] = round(block["g_ours_adaptive"]["seconds"] / block["e_ours"]["seconds"], 3)
        block["prompts_per_s"] = round(num_rows / block["e_ours"]["seconds"], 2)  # full k, on this machine
        block["adaptive_rollouts_saved"] = round(1 - block["g_ours_adaptive"]["rollouts"] / (num_rows * k), 3)
        block["adaptive_bucket_agreement"] = round(agree / num_rows, 4)
        block["buckets_full_k"] = {
            b: sum(bucket_of(v) == b for v in full["difficulty"]) for b in ("easy", "medium", "hard")
        }
        results["workloads"][workload] = block

    if args.large_k and ("one-token" in chosen or mix_rows is not None):
        large_workload = "one-token" if mix_rows is None else "paper-mix"
        dataset = workload_rows("one-token") if mix_rows is None else mix_rows
        large = args.large_k

        def ours_large(num_rollouts: int, adaptive: bool) -> Callable[[], Any]:
            scorer = scorer_for(large_workload, num_rollouts, adaptive)
            return lambda: score_dataset(dataset, scorer, batch_size=args.batch_size, progress=False)

        runs = {
            f"k{k}_full": ours_large(k, False),
            f"k{large}_full": ours_large(large, False),
            f"k{large}_adaptive": ours_large(large, True),
        }
        outputs, seconds, _ = timed_runs(runs)
        reference = outputs[f"k{large}_full"]["difficulty"]
        block = {"rows": len(dataset), "workload": large_workload}
        for name in runs:
            ours_buckets = outputs[name]["difficulty"]
            block[name] = {
                "seconds": round(min(seconds[name]), 3),
                "rollouts": int(sum(outputs[name]["num_rollouts"])),
                "agreement_with_large_k_full": round(
                    sum(bucket_of(a) == bucket_of(b) for a, b in zip(ours_buckets, reference)) / len(reference), 4
                ),
                "buckets": {b: sum(bucket_of(v) == b for v in ours_buckets) for b in ("easy", "medium", "hard")},
            }
        results["large_k"] = block
    results["load_after"] = load_average()
    print_vllm_results(results)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)
    if args.doc:
        command = shlex.join(["python", "benchmarks/rollouts.py", *sys.argv[1:]])
        replace_doc_block(args.doc, vllm_markdown(results, command), VLLM_BLOCK)
    engine.llm.llm_engine.engine_core.shutdown()


VLLM_TARGETS = {"one-token": 0.95, "decode-bound": 0.85, "paper-mix": 0.85}  # adaptive / full k, from the issues
#: ours (full k) / bare n=k, on every workload (issue 31).
VLLM_OURS_OVER_N_K = 1.02


def vllm_markdown(results: dict[str, Any], command: str) -> str:
    """The vLLM rows as the markdown block of the performance page."""
    lines = [
        f"Measured with `{command}` on {machine_words(results['machine'])}, transformers "
        f"{results['machine']['transformers']}, vLLM {results.get('vllm', '?')}; vLLM engine options "
        f"`{results['engine_options']}`, k={results['num_rollouts']}, batch {results['batch_size']}, fastest of "
        f"{results['repeats']} rotated repeats; engine start-up ({results['engine_startup_seconds']} s) not counted. "
        f"Load average before {results['load_before']}, after {results['load_after']}.",
        "",
        "| workload | rows | (e) ours, one request per row | (f) bare n=k | (g) ours, adaptive | (e)/(f) | "
        "(g)/(e) adaptive / full k | rollouts saved | same bucket | buckets at full k |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, block in results["workloads"].items():
        buckets = "/".join(str(block["buckets_full_k"][b]) for b in ("easy", "medium", "hard"))
        lines.append(
            f"| {name} | {block['rows']} | {block['e_ours']['seconds']:.2f} s "
            f"| {block['f_bare_n_k']['seconds']:.2f} s | {block['g_ours_adaptive']['seconds']:.2f} s "
            f"| {block['ours_over_n_k']}x | {block['adaptive_over_full']}x "
            f"| {block['adaptive_rollouts_saved']:.1%} | {block['adaptive_bucket_agreement']:.2%} | {buckets} |"
        )
    if "large_k" in results:
        block = results["large_k"]
        lines += [
            "",
            f"{block['workload']} workload, {block['rows']} rows: a large k, adaptive, against full draws.",
            "",
            "| run | seconds | rollouts drawn | same bucket as the large-k full draw | buckets (easy/medium/hard) |",
            "| --- | ---: | ---: | ---: | --- |",
        ]
        for run, r in block.items():
            if isinstance(r, dict):
                buckets = "/".join(str(r["buckets"][b]) for b in ("easy", "medium", "hard"))
                lines.append(
                    f"| {run} | {r['seconds']:.2f} | {r['rollouts']} | {r['agreement_with_large_k_full']:.2%} "
                    f"| {buckets} |"
                )
    return "\n".join(lines) + "\n"


def print_vllm_results(results: dict[str, Any]) -> None:
    print(f"\nvLLM engine start-up (not in any run): {results['engine_startup_seconds']} s")
    print(f"engine options {results['engine_options']}; k={results['num_rollouts']}, batch {results['batch_size']}")
    for name, block in results["workloads"].items():
        print(f"\n== vLLM {name}: {block['rows']} rows, up to {block['max_new_tokens']} new tokens ==")
        print(f"{'run':<24}{'seconds':>9}{'rollouts':>10}{'rollouts/s':>12}  all seconds")
        for run in ("e_ours", "f_bare_n_k", "f1_bare_per_rollout", "g_ours_adaptive"):
            r = block[run]
            print(f"{run:<24}{r['seconds']:>9.2f}{r['rollouts']:>10}{r['rollouts_per_s']:>12.1f}  {r['all_seconds']}")
        print(f"(e)/(f) ours over bare n=k: {block['ours_over_n_k']}x  (target <= {VLLM_OURS_OVER_N_K})")
        print(f"(f1)/(f) bare per-rollout requests over bare n=k: {block['bare_per_rollout_over_n_k']}x")
        print(
            f"(g)/(e) adaptive over full k: {block['adaptive_over_full']}x  (target <= {VLLM_TARGETS.get(name, '-')}); "
            f"{block['adaptive_rollouts_saved']:.1%} fewer rollouts, "
            f"{block['adaptive_bucket_agreement']:.2%} same bucket as full k; buckets {block['buckets_full_k']}"
        )
        print(f"prefix-cache hit rate (tokens) per run: {block['prefix_cache_hit_rate']}")
    if "large_k" in results:
        block = results["large_k"]
        print(f"\n== vLLM {block['workload']}, {block['rows']} rows: adaptive at a large k against full draws ==")
        print(f"{'run':<16}{'seconds':>9}{'rollouts':>10}  same bucket as the large-k full draw; buckets")
        for run, r in block.items():
            if isinstance(r, dict):
                print(
                    f"{run:<16}{r['seconds']:>9.2f}{r['rollouts']:>10}  "
                    f"{r['agreement_with_large_k_full']:.2%}; {r['buckets']}"
                )
    print(
        f"\nmachine: {results['machine']}; load average before {results['load_before']}, after {results['load_after']}"
    )


if __name__ == "__main__":
    main()
