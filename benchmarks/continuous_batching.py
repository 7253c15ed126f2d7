"""Adaptive sampling on the transformers backend: today's rounds vs transformers' continuous batching.

    python benchmarks/continuous_batching.py                 # CPU, text part of the demo VLM (about 4 minutes)
    python benchmarks/continuous_batching.py --rows 32 --max-requests-per-batch 16,32,64,128,256

A measurement for issue #24 (part 3), not part of the library. transformers 5.x offers continuous
batching (`model.init_continuous_batching()` / `generate_batch`): a finished sequence frees its slot
at once, which is what adaptive sampling wants. This script checks whether it beats the adaptive
rounds of `DifficultyScorer` (one shared prefill per prompt, the still-open rows decoded together
each round) on the decode-bound workload of `benchmarks/rollouts.py`, at identical rollouts.

Continuous batching takes token ids only (`add_request(input_ids, ...)`, 1-D position ids): no
`pixel_values`, image grids or M-RoPE positions. So the workload runs on the text half of the demo
VLM (its Llama language model and LM head, saved as a `LlamaForCausalLM`), on the digit question
without the image; every rollout decodes the full --max-new-tokens (end-of-sequence off).
Its sampler is one `torch.multinomial` on a generator shared by the whole batch (or a global seed):
no per-request seed. Exactness is recovered here by a custom per-request logits processor that
does what `engines/sampling.CounterSampler` does (token t of rollout j drawn from
uniform(seed(row, j), t)) and leaves one finite score, so the engine's argmax takes that token.

Runs, on one loaded model, same rows, same rollouts per row:
(a) ours: `score_dataset` with adaptive=True (the rollouts each row drew are the workload);
(a') bare rounds: the engine's prefill + per-round decode of exactly (a)'s rows and rollouts;
(b) continuous batching: every rollout (a) drew, one request each, all submitted at once to a
    `ContinuousBatchingManager` with the counter sampler; (b) includes starting and stopping it.
(b) runs once per --max-requests-per-batch value. Prints seconds, the ratios (b)/(a) and (b)/(a'),
and how many rollouts are identical to (a)'s.

Why (b) loses on CPU: without flash attention (not available on CPU) continuous batching runs
SDPA or eager attention on all scheduled requests packed into one sequence, with a block-diagonal
mask, so one decode step costs (requests in the step) x (their summed KV length): quadratic in the
batch width. Narrow steps avoid that but pay the Python scheduler once per step.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from difficulty_curation.engines.sampling import counter_uniform

#: Seconds from the first request to the last result of each continuous-batching run (start and stop left out).
GENERATION_SECONDS: dict[int, list[float]] = {}


def leading_answer(completion: str, reference: Any) -> float:
    """1.0 when the completion starts with the reference (the decode-bound verifier of benchmarks/rollouts.py)."""
    return float(completion.strip().startswith(str(reference).strip()))


def build_text_model(demo: Path, target: Path) -> Path:
    """The demo VLM's language model and LM head as a text-only `LlamaForCausalLM`, with its tokenizer."""
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoTokenizer

    vlm = AutoModelForImageTextToText.from_pretrained(demo, dtype=torch.float32)
    text = AutoModelForCausalLM.from_config(vlm.config.get_text_config(), dtype=torch.float32)
    text.model.load_state_dict(vlm.model.language_model.state_dict())
    text.lm_head.load_state_dict(vlm.lm_head.state_dict())
    text.generation_config.pad_token_id = vlm.generation_config.pad_token_id
    text.save_pretrained(target)
    tokenizer = AutoTokenizer.from_pretrained(demo)
    tokenizer.chat_template = (demo / "chat_template.jinja").read_text()
    tokenizer.save_pretrained(target)
    settings = json.loads((target / "tokenizer_config.json").read_text())
    settings.pop("processor_class", None)  # AutoProcessor would look for LLaVA's image processor
    (target / "tokenizer_config.json").write_text(json.dumps(settings, indent=1))
    return target


def text_rows(num_rows: int) -> Any:
    """The digit question without its image; each row names its scan so no two rows are identical."""
    from datasets import Dataset

    from difficulty_curation.demo import digits_dataset

    digits = digits_dataset(split="train", num_rows=num_rows)
    problems = [f"{problem} (scan {index})" for index, problem in enumerate(digits["problem"])]
    return Dataset.from_dict({"problem": problems, "solution": digits["solution"]})


def counter_sampling_processor(temperature: float, top_k: int, top_p: float) -> Any:
    """A continuous-batching logits processor drawing each request's token t from uniform(rollout_seed, t)."""
    from transformers.generation.continuous_batching.cb_logits_processors import ContinuousBatchingLogitsProcessor

    class CounterSamplingProcessor(ContinuousBatchingLogitsProcessor):
        supported_kwargs: ClassVar[dict[str, type]] = {"rollout_seed": int}
        ignored_kwargs = ()

        def fill_defaults(self, int32_tensor: torch.Tensor) -> None:
            int32_tensor.fill_(0)

        def prepare_tensor_args(self, requests_with_new_token: list[Any]) -> torch.Tensor:
            seeds = np.array(
                [r.state.logit_processor_kwargs["rollout_seed"] for r in requests_with_new_token], np.uint64
            )
            steps = [len(r.state.generated_tokens) for r in requests_with_new_token]
            uniform = np.array([counter_uniform(seeds[i : i + 1], step)[0] for i, step in enumerate(steps)])
            return torch.from_numpy(uniform).to(torch.float32).view(torch.int32)

        def __call__(self, scores: torch.Tensor, tensor_arg: torch.Tensor) -> torch.Tensor:
            uniform = tensor_arg[: scores.size(0)].view(torch.float32)
            logits = scores.float() / temperature
            if 0 < top_k < logits.shape[-1]:
                values, indices = logits.topk(top_k, dim=-1)
            else:
                values, indices = logits.sort(dim=-1, descending=True)
            probs = values.softmax(dim=-1)
            if top_p < 1.0:
                before = probs.cumsum(dim=-1) - probs
                probs = probs * (before < top_p)
            cdf = probs.cumsum(dim=-1)
            targets = (uniform * cdf[:, -1]).unsqueeze(-1)
            positions = torch.searchsorted(cdf, targets).clamp(max=cdf.shape[-1] - 1)
            chosen = indices.gather(-1, positions)
            return torch.full_like(scores, float("-inf")).scatter_(-1, chosen, 0.0)

    return CounterSamplingProcessor()


def continuous_batching(
    engine: Any, prompts: list[list[int]], rollouts: list[tuple[int, int, int]], args: argparse.Namespace, width: int
) -> dict[tuple[int, int], str]:
    """Every (row, rollout, seed) in `rollouts` as one request through a fresh `ContinuousBatchingManager`."""
    from transformers import ContinuousBatchingConfig, GenerationConfig, LogitsProcessorList
    from transformers.generation.continuous_batching.cb_logits_processors import (
        ContinuousBatchingLogitsProcessorList,
    )

    rollout = engine.rollout
    generation = GenerationConfig(do_sample=False, max_new_tokens=args.max_new_tokens, eos_token_id=-1, pad_token_id=0)
    longest = max(len(ids) for ids in prompts) + args.max_new_tokens
    pages_per_request = -(-longest // args.page_size)
    config = ContinuousBatchingConfig(
        page_size=args.page_size,
        num_blocks=len(rollouts) * pages_per_request + 8,
        max_batch_tokens=args.max_batch_tokens,
        max_requests_per_batch=width,
        use_async_batching=False,
        use_cuda_graph=False,
        auto_switch_to_flash=False,
    )
    manager = engine.model.init_continuous_batching(generation_config=generation, continuous_batching_config=config)
    sampler = counter_sampling_processor(rollout.temperature, rollout.top_k, rollout.top_p)
    processors = ContinuousBatchingLogitsProcessorList(LogitsProcessorList([sampler]))
    processors.tensors_required = 1  # one argument row: the uniform draw of each request's next token
    manager.logit_processor = processors
    manager.start()
    texts: dict[tuple[int, int], str] = {}
    started = time.perf_counter()
    try:
        for row, index, seed in rollouts:
            manager.add_request(
                prompts[row],
                request_id=f"{row}:{index}",
                max_new_tokens=args.max_new_tokens,
                eos_token_id=-1,
                rollout_seed=seed,
            )
        while len(texts) < len(rollouts):
            result = manager.get_result(timeout=10)
            if result is None:
                if not manager.is_running():
                    raise RuntimeError("the continuous batching loop stopped early")
                continue
            if result.is_finished():
                if result.error is not None:
                    raise RuntimeError(f"request {result.request_id} failed: {result.error}")
                row, index = (int(part) for part in result.request_id.split(":"))
                texts[row, index] = engine.tokenizer.decode(result.generated_tokens, skip_special_tokens=True)
        GENERATION_SECONDS.setdefault(width, []).append(round(time.perf_counter() - started, 3))
    finally:
        manager.stop(block=True, timeout=10)
        manager.destroy()
    return texts


def bare_rounds(
    engine: Any, requests: list[Any], drawn: list[int], args: argparse.Namespace
) -> dict[tuple[int, int], str]:
    """(a)'s schedule on the engine alone: per batch one prefill, then each round decodes the rows still open."""
    from difficulty_curation.scoring import adaptive_rounds

    texts: dict[tuple[int, int], str] = {}
    for start in range(0, len(requests), args.batch_size):
        stop = min(start + args.batch_size, len(requests))
        session = engine.prefill(requests[start:stop])
        first = 0
        for count in adaptive_rounds(args.num_rollouts):
            active = [position for position in range(stop - start) if drawn[start + position] > first]
            if not active:
                break
            for position, outcome in zip(active, session.sample(active, count, first_rollout=first)):
                texts.update({(start + position, first + i): str(text) for i, text in enumerate(outcome)})
            first += count
    return texts


def timed(run: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    result = run()
    return result, time.perf_counter() - started


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=128, help="as the decode-bound workload of rollouts.py")
    parser.add_argument("--num-rollouts", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=64, help="rows per scorer batch for (a) and (a')")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repeats; the fastest of each counts")
    parser.add_argument("--page-size", type=int, default=256, help="continuous batching: tokens per KV page")
    parser.add_argument("--max-batch-tokens", type=int, default=4096, help="continuous batching: tokens per step")
    parser.add_argument(
        "--max-requests-per-batch",
        default="64,256",
        help="continuous batching: requests per step; a comma-separated list runs (b) once per value",
    )
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    from transformers.utils import logging as transformers_logging

    from difficulty_curation import score_difficulty
    from difficulty_curation.demo import ensure_demo_model
    from difficulty_curation.engines.base import derive_seed, render_chat
    from difficulty_curation.engines.transformers import TransformersEngine
    from difficulty_curation.prompts import build_request
    from difficulty_curation.runners.in_memory import score_dataset

    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    load_before = load_average()
    folder = tempfile.mkdtemp(prefix="cb-text-model-")
    atexit.register(shutil.rmtree, folder, True)
    model = str(build_text_model(ensure_demo_model(), Path(folder)))
    options = {"num_rollouts": args.num_rollouts, "max_new_tokens": args.max_new_tokens, "image_column": None}
    options |= {"verifier": leading_answer, "keep_rollouts": True}
    engine = TransformersEngine(score_difficulty(model, **options).config, device="cpu")
    engine.model.generation_config.eos_token_id = None  # decode-bound: every rollout runs the full length
    dataset = text_rows(args.rows)
    config = score_difficulty(model, adaptive=True, **options).config
    requests = [build_request(row, config.columns, max_pixels=config.max_pixels) for row in dataset]
    prompts = [
        engine.tokenizer(render_chat(engine.processor, r.messages), add_special_tokens=False)["input_ids"]
        for r in requests
    ]

    def ours() -> Any:
        scorer = score_difficulty(model, adaptive=True, **options)
        scorer.engine = engine
        return score_dataset(dataset, scorer, batch_size=args.batch_size, progress=False)

    scored, _ = timed(ours)  # warm-up, and the rollouts every other run draws
    drawn = [int(n) for n in scored["num_rollouts"]]
    reference = {(row, i): text for row, texts in enumerate(scored["rollouts"]) for i, text in enumerate(texts)}
    seed = config.rollout.seed
    rollouts = [
        (row, i, derive_seed(seed, requests[row].content_hash, str(i)))
        for row in range(len(requests))
        for i in range(drawn[row])
    ]
    runs = {
        "a_ours_adaptive": ours,
        "a_bare_rounds": lambda: bare_rounds(engine, requests, drawn, args),
    }
    for width in [int(value) for value in args.max_requests_per_batch.split(",")]:
        runs[f"b_continuous_batching_{width}"] = lambda width=width: continuous_batching(
            engine, prompts, rollouts, args, width
        )
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    outputs: dict[str, Any] = {}
    names = list(runs)
    for repeat in range(args.repeats):
        for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
            outputs[name], spent = timed(runs[name])
            seconds[name].append(round(spent, 3))
    load_after = load_average()

    def identical(texts: dict[tuple[int, int], str]) -> int:
        return sum(texts.get(key) == text for key, text in reference.items())

    best = {name: min(spent) for name, spent in seconds.items()}
    cb_runs = [name for name in runs if name.startswith("b_")]
    results = {
        "model": "demo VLM's language model as LlamaForCausalLM (text only)",
        "rows": len(requests),
        "num_rollouts": args.num_rollouts,
        "max_new_tokens": args.max_new_tokens,
        "rollouts_drawn": len(reference),
        "rollouts_full_k": len(requests) * args.num_rollouts,
        "seconds": seconds,
        "cb_generation_seconds": GENERATION_SECONDS,
        "cb_over_ours": {name: round(best[name] / best["a_ours_adaptive"], 3) for name in cb_runs},
        "cb_over_bare_rounds": {name: round(best[name] / best["a_bare_rounds"], 3) for name in cb_runs},
        "identical_bare_rounds": identical(outputs["a_bare_rounds"]),
        "identical_cb": {name: identical(outputs[name]) for name in cb_runs},
        "cpu": cpu_name(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "torch": torch.__version__,
        "load_before": load_before,
        "load_after": load_after,
    }
    print_results(results)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)


def cpu_name() -> str:
    with open("/proc/cpuinfo") as handle:
        return next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), "unknown")


def print_results(results: dict[str, Any]) -> None:
    import transformers

    print(
        f"decode-bound, text only: {results['rows']} rows, k={results['num_rollouts']}, "
        f"{results['max_new_tokens']} new tokens each; adaptive drew {results['rollouts_drawn']} of "
        f"{results['rollouts_full_k']} rollouts"
    )
    for name, spent in results["seconds"].items():
        print(f"{name:<24}{min(spent):>9.2f} s  all {spent}")
    total = results["rollouts_drawn"]
    print(f"identical to (a)'s rollouts: bare rounds {results['identical_bare_rounds']}/{total}")
    for name, ratio in results["cb_over_ours"].items():
        width = int(name.rsplit("_", 1)[1])
        print(
            f"{name}: (b)/(a) {ratio}x, (b)/(a') {results['cb_over_bare_rounds'][name]}x, "
            f"identical {results['identical_cb'][name]}/{total}; "
            f"seconds without starting/stopping the manager {results['cb_generation_seconds'][width]}"
        )
    print(
        f"machine: {results['cpu']}, {results['usable_cores']} usable cores, torch {results['torch']}, "
        f"transformers {transformers.__version__}; load average before {results['load_before']}, "
        f"after {results['load_after']}"
    )


if __name__ == "__main__":
    main()
