"""Rollout throughput: the paper's loop vs our scorer vs the bare engine call, in one process.

    python benchmarks/rollouts.py                      # CPU, bundled tiny VLM, 512 digits (a few minutes)
    python benchmarks/rollouts.py --model Qwen/Qwen2.5-VL-3B-Instruct --device cuda --rows 1024

(a) paper loop: k sequential passes over the data, `generate` at batch 4, one sample per call
    (every prompt is preprocessed and prefilled k times);
(b) ours: `score_dataset` with the transformers backend (dataset decoding, prompts, sampling,
    verification and Arrow output included);
(c) bare engine: one `processor(...)` + `generate(num_return_sequences=k)` + decode per batch of
    pre-decoded images, nothing else;
(d) ours with adaptive=True: rollouts saved, and agreement of its buckets with (b)'s.
Prints rows/s, rollouts/s, peak memory and the ratios (a)/(b) and (b)/(c); --json writes them.

    python benchmarks/rollouts.py --vllm               # in the vLLM environment (make install-vllm)

runs the vLLM rows instead, on one started engine (start-up timed and reported on its own):
(e) ours: `score_dataset` with the vLLM backend; (f) bare engine: `LLM.generate` with
`SamplingParams(n=k)` on the same rendered prompts and images, same batches, nothing else;
(g) ours with adaptive=True. The prefix cache is on and emptied before each run, so (g)'s later
rounds find their prompts cached as they would in a real run.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import torch


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model folder or Hub id [default: the bundled demo VLM]")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=64, help="rows per generate call for (b) and (c)")
    parser.add_argument("--paper-batch-size", type=int, default=4)
    parser.add_argument("--num-rollouts", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--vllm", action="store_true", help="run the vLLM rows (e), (f), (g) instead")
    parser.add_argument(
        "--engine-option", action="append", default=[], help="KEY=VALUE for vllm.LLM (with --vllm); repeatable"
    )
    args = parser.parse_args()
    if args.vllm:
        vllm_rows(args)
        return

    from transformers.utils import logging as transformers_logging

    from difficulty_curation import score_difficulty
    from difficulty_curation.demo import digits_dataset, ensure_demo_model
    from difficulty_curation.engines.base import render_chat
    from difficulty_curation.engines.transformers import TransformersEngine
    from difficulty_curation.prompts import build_request
    from difficulty_curation.scoring import score_dataset
    from difficulty_curation.transforms import bucket_of
    from difficulty_curation.verifiers import exact_match

    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    torch.set_num_threads(os.cpu_count() or 1)
    model = args.model or str(ensure_demo_model())
    k = args.num_rollouts
    dataset = digits_dataset(split="train", num_rows=args.rows)
    options = {"num_rollouts": k, "max_new_tokens": args.max_new_tokens}
    scorer = score_difficulty(model, **options)
    engine = TransformersEngine(scorer.config, device=args.device)  # one model for all four runs
    scorer.engine = engine
    processor, hf_model, tokenizer = engine.processor, engine.model, engine.tokenizer
    rollout = scorer.config.rollout
    sampling = {"do_sample": True, "temperature": rollout.temperature, "top_p": rollout.top_p, "top_k": rollout.top_k}
    sampling |= {"max_new_tokens": rollout.max_new_tokens, "pad_token_id": tokenizer.pad_token_id}

    rows = list(dataset)  # decoded images, for the runs that have no dataset machinery
    texts = [render_chat(processor, build_request(row, scorer.config).messages) for row in rows]
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
                        correct[start + offset] += int(exact_match(answer, rows[start + offset]["solution"]))
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

    bare_engine()  # warm-up: first-call allocations and lazy initialisation stay out of every timing
    results: dict[str, Any] = {"model": model, "device": args.device, "rows": len(rows), "num_rollouts": k}
    runs = {
        "a_paper_loop": lambda: paper_loop(),
        "b_ours": lambda: ours(),
        "c_bare_engine": lambda: bare_engine(),
        "d_ours_adaptive": lambda: ours(adaptive=True),
    }
    outputs = {}
    for name, run in runs.items():
        outputs[name], seconds, peak = timed(args.device, run)
        drawn = sum(outputs[name]["num_rollouts"]) if name.endswith(("ours", "adaptive")) else len(rows) * k
        results[name] = {
            "seconds": round(seconds, 3),
            "rows_per_s": round(len(rows) / seconds, 1),
            "rollouts_per_s": round(drawn / seconds, 1),
            "rollouts": drawn,
            "peak_memory_mb": round(peak / 2**20, 1),
        }
    full, adaptive = outputs["b_ours"], outputs["d_ours_adaptive"]
    agree = sum(bucket_of(f) == bucket_of(a) for f, a in zip(full["difficulty"], adaptive["difficulty"]))
    results["paper_loop_over_ours"] = round(results["a_paper_loop"]["seconds"] / results["b_ours"]["seconds"], 2)
    results["ours_over_bare_engine"] = round(results["b_ours"]["seconds"] / results["c_bare_engine"]["seconds"], 3)
    results["adaptive_rollouts_saved"] = round(
        1 - results["d_ours_adaptive"]["rollouts"] / results["b_ours"]["rollouts"], 3
    )
    results["adaptive_bucket_agreement"] = round(agree / len(rows), 4)
    results["buckets_full_k"] = {
        b: sum(bucket_of(v) == b for v in full["difficulty"]) for b in ("easy", "medium", "hard")
    }

    print(f"{'run':<18}{'seconds':>9}{'rows/s':>9}{'rollouts/s':>12}{'rollouts':>10}{'peak MB':>10}")
    for name in runs:
        r = results[name]
        print(
            f"{name:<18}{r['seconds']:>9.2f}{r['rows_per_s']:>9.1f}{r['rollouts_per_s']:>12.1f}{r['rollouts']:>10}{r['peak_memory_mb']:>10.1f}"
        )
    print(f"(a)/(b) paper loop time over ours: {results['paper_loop_over_ours']}x  (target >= 8)")
    print(f"(b)/(c) ours over bare engine:     {results['ours_over_bare_engine']}x  (target <= 1.10)")
    print(
        f"adaptive: {results['adaptive_rollouts_saved']:.1%} fewer rollouts, "
        f"{results['adaptive_bucket_agreement']:.2%} same bucket as full k; buckets {results['buckets_full_k']}"
    )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)


def vllm_rows(args: argparse.Namespace) -> None:
    """(e) our scorer on the vLLM backend, (f) bare `LLM.generate(n=k)`, (g) adaptive; one engine for all."""
    import tempfile

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    os.environ.setdefault("VLLM_CACHE_ROOT", tempfile.mkdtemp(prefix="vllm-cache-"))
    from difficulty_curation import score_difficulty
    from difficulty_curation.config import parse_engine_options
    from difficulty_curation.demo import digits_dataset, ensure_demo_model
    from difficulty_curation.engines.base import derive_seed, render_chat
    from difficulty_curation.engines.vllm import VLLMEngine, build_vllm_prompt, parse_vllm_outputs, sampling_kwargs
    from difficulty_curation.prompts import build_request
    from difficulty_curation.scoring import score_dataset
    from difficulty_curation.transforms import bucket_of

    model = args.model or str(ensure_demo_model())
    engine_options = {"enforce_eager": True, "enable_prefix_caching": True}
    if args.model is None:  # the demo LLaVA, saved by transformers 5: see the README on model_impl
        engine_options["model_impl"] = "transformers"
    engine_options |= parse_engine_options(args.engine_option)
    k = args.num_rollouts
    options = {"num_rollouts": k, "max_new_tokens": args.max_new_tokens, "backend": "vllm"}
    scorer = score_difficulty(model, engine_options=engine_options, **options)
    started = time.perf_counter()
    engine = VLLMEngine(scorer.config)
    startup_seconds = time.perf_counter() - started
    from vllm import SamplingParams

    dataset = digits_dataset(split="train", num_rows=args.rows)
    requests = [build_request(row, scorer.config) for row in dataset]
    prompts = [build_vllm_prompt(render_chat(engine.processor, r.messages), r.images) for r in requests]
    rollout = scorer.config.rollout
    params = [
        SamplingParams(**sampling_kwargs(rollout, k, seed=derive_seed(rollout.seed, r.content_hash, "0")))
        for r in requests
    ]

    def bare_engine() -> list[list[str]]:
        completions: list[list[str]] = []
        for start in range(0, len(prompts), args.batch_size):
            stop = start + args.batch_size
            outputs = engine.llm.generate(prompts[start:stop], params[start:stop], use_tqdm=False)
            completions += parse_vllm_outputs(outputs, len(outputs), k)
        return completions

    def ours(adaptive: bool = False) -> Any:
        run_scorer = score_difficulty(model, engine_options=engine_options, adaptive=adaptive, **options)
        run_scorer.engine = engine.with_config(run_scorer.config)
        return score_dataset(dataset, run_scorer, batch_size=args.batch_size, progress=False)

    bare_engine()  # warm-up
    results: dict[str, Any] = {
        "model": model,
        "backend": "vllm",
        "engine_options": engine.engine_options,
        "rows": len(prompts),
        "num_rollouts": k,
        "batch_size": args.batch_size,
        "engine_startup_seconds": round(startup_seconds, 1),
    }
    runs = {"e_ours_vllm": ours, "f_bare_vllm": bare_engine, "g_ours_vllm_adaptive": lambda: ours(adaptive=True)}
    outputs = {}
    for name, run in runs.items():
        engine.llm.reset_prefix_cache()
        outputs[name], seconds, peak = timed("cpu", run)
        drawn = sum(outputs[name]["num_rollouts"]) if name.startswith(("e_", "g_")) else len(prompts) * k
        results[name] = {
            "seconds": round(seconds, 3),
            "rows_per_s": round(len(prompts) / seconds, 1),
            "rollouts_per_s": round(drawn / seconds, 1),
            "rollouts": drawn,
            "peak_memory_mb": round(peak / 2**20, 1),  # this process only; the engine runs in others
        }
    full, adaptive = outputs["e_ours_vllm"], outputs["g_ours_vllm_adaptive"]
    agree = sum(bucket_of(f) == bucket_of(a) for f, a in zip(full["difficulty"], adaptive["difficulty"]))
    results["ours_over_bare_vllm"] = round(results["e_ours_vllm"]["seconds"] / results["f_bare_vllm"]["seconds"], 3)
    results["adaptive_rollouts_saved"] = round(1 - results["g_ours_vllm_adaptive"]["rollouts"] / (len(prompts) * k), 3)
    results["adaptive_over_full_seconds"] = round(
        results["g_ours_vllm_adaptive"]["seconds"] / results["e_ours_vllm"]["seconds"], 3
    )
    results["adaptive_bucket_agreement"] = round(agree / len(prompts), 4)
    print(f"engine start-up (not in any run): {startup_seconds:.1f} s; options {engine.engine_options}")
    print(f"{'run':<22}{'seconds':>9}{'rows/s':>9}{'rollouts/s':>12}{'rollouts':>10}")
    for name in runs:
        r = results[name]
        print(f"{name:<22}{r['seconds']:>9.2f}{r['rows_per_s']:>9.1f}{r['rollouts_per_s']:>12.1f}{r['rollouts']:>10}")
    print(f"(e)/(f) ours over bare vLLM:  {results['ours_over_bare_vllm']}x  (target <= 1.10)")
    print(
        f"adaptive on vLLM: {results['adaptive_rollouts_saved']:.1%} fewer rollouts, "
        f"{results['adaptive_over_full_seconds']}x the wall time of full k, "
        f"{results['adaptive_bucket_agreement']:.2%} same bucket as full k"
    )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)
    engine.llm.llm_engine.engine_core.shutdown()


if __name__ == "__main__":
    main()
