"""The openai backend against a real HTTP server process on 127.0.0.1 (tests/openai_test_server.py)."""

import json
import logging

import httpx
import pytest
from datasets import Dataset
from helpers import CUT_OFF, assert_finish_reasons_are_real, start_openai_server
from PIL import Image

from difficulty_curation import score_difficulty
from difficulty_curation.engines.openai import (
    EndpointError,
    OpenAIEngine,
    chat_request_body,
    image_data_url,
    parse_chat_response,
)
from difficulty_curation.prompts import PromptRequest
from difficulty_curation.runners.in_memory import score_dataset
from difficulty_curation.runners.run_folder import score_to_dir
from difficulty_curation.transforms import bucket_of

SECRET = "sk-test-do-not-print-7d1f"


@pytest.fixture(scope="module")
def server(trained_vlm):
    process, url = start_openai_server(trained_vlm, "--api-key", SECRET, "--fail-first", "2")
    yield url
    process.kill()
    process.wait()


def scorer_for(model, url, *, max_concurrency=2, **options):
    options = {"num_rollouts": 4, "max_new_tokens": 4, **options}
    scorer = score_difficulty(str(model), backend="openai", api_base=url, **options)
    scorer.engine = OpenAIEngine(scorer.config, api_key=SECRET, max_concurrency=max_concurrency, backoff=0.05)
    return scorer


def test_the_request_body_carries_n_sampling_options_and_images_as_data_urls():
    image = Image.new("RGB", (3, 3), "red")
    request = PromptRequest(
        messages=[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Which digit?"}]}],
        images=[image],
    )
    body = chat_request_body(request, model="m", rollout=score_difficulty("m").config.rollout, num_rollouts=8, seed=5)
    assert {k: body[k] for k in ("model", "n", "temperature", "top_p", "top_k", "max_tokens", "seed")} == {
        "model": "m",
        "n": 8,
        "temperature": 0.9,
        "top_p": 1.0,
        "top_k": 50,
        "max_tokens": 128,
        "seed": 5,
    }
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": image_data_url(image)}},
                {"type": "text", "text": "Which digit?"},
            ],
        }
    ]
    assert image_data_url(image).startswith("data:image/png;base64,")


def test_choices_are_read_in_index_order_and_counted():
    payload = {"choices": [{"index": 1, "message": {"content": "b"}}, {"index": 0, "message": {"content": "a"}}]}
    assert parse_chat_response(payload, 2) == ["a", "b"]
    with pytest.raises(EndpointError, match="returned 2 choices, expected n=3"):
        parse_chat_response(payload, 3)


def test_scoring_against_a_served_model_with_retries_and_bounded_concurrency(server, trained_vlm, digits, caplog):
    with caplog.at_level(logging.WARNING):
        scored = digits.map(scorer_for(trained_vlm, server), batched=True, batch_size=12, load_from_cache_file=False)
    assert scored["num_rollouts"] == [4] * len(digits) and set(scored["difficulty_error"]) == {""}
    assert sum(scored["num_correct"]) > len(digits)  # the served cold-started model reads digits
    assert "answered 503; trying again" in caplog.text  # the server failed its first two requests
    stats = httpx.get(server + "/stats").json()
    assert stats["max_in_flight"] <= 2
    again = digits.map(scorer_for(trained_vlm, server, max_concurrency=4), batched=True, load_from_cache_file=False)
    assert again["difficulty"] == scored["difficulty"]  # per-rollout seeds: same answers, any concurrency


def test_the_api_key_never_appears_in_output_logs_or_files(server, trained_vlm, digits, tmp_path, caplog, capsys):
    with caplog.at_level(logging.DEBUG):
        score_to_dir(
            digits.select(range(4)), scorer_for(trained_vlm, server), tmp_path / "run", batch_size=2, progress=False
        )
    captured = capsys.readouterr()
    assert SECRET not in caplog.text + captured.out + captured.err
    for path in (tmp_path / "run").rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    spec = json.loads((tmp_path / "run" / ".curate" / "run.json").read_text())
    assert spec["scoring"]["api_base"] == server and "api_key" not in json.dumps(spec)


def test_a_wrong_key_stops_scoring_naming_the_status_not_the_key(server, trained_vlm, digits):
    scorer = score_difficulty(str(trained_vlm), backend="openai", api_base=server, num_rollouts=2)
    scorer.engine = OpenAIEngine(scorer.config, api_key="wrong-key", backoff=0.01)
    with pytest.raises(EndpointError, match="refused the API key \\(401") as error:
        digits.select(range(1)).map(scorer, batched=True, load_from_cache_file=False)
    assert "wrong-key" not in str(error.value)


def test_an_unreachable_endpoint_fails_after_retries_with_a_clear_message(trained_vlm, digits):
    scorer = score_difficulty(str(trained_vlm), backend="openai", api_base="http://127.0.0.1:9/v1", num_rollouts=2)
    scorer.engine = OpenAIEngine(scorer.config, api_key=SECRET, max_retries=2, backoff=0.01)
    with pytest.raises(EndpointError, match=r"127.0.0.1:9/v1/chat/completions unreachable .* after 3 tries") as error:
        digits.select(range(1)).map(scorer, batched=True)
    assert SECRET not in str(error.value)


def test_the_openai_backend_needs_an_endpoint(monkeypatch):
    from difficulty_curation import ConfigError

    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ConfigError, match="needs the endpoint"):
        _ = score_difficulty("my-org/my-vlm", backend="openai").engine


def test_text_only_rows_are_served_too(server, trained_vlm):
    rows = Dataset.from_dict({"problem": ["Which digit comes after 3?"], "solution": ["4"]})
    scored = rows.map(scorer_for(trained_vlm, server, image_column=None), batched=True)
    assert scored["num_rollouts"] == [4]


# -- finish reasons and chat template variables, served -------------------------------------------


def test_the_served_finish_reasons_are_real_and_num_truncated_counts_them(server, trained_vlm, digits):
    def served(max_new_tokens):
        scorer = score_difficulty(
            str(trained_vlm), backend="openai", api_base=server, **{**CUT_OFF, "max_new_tokens": max_new_tokens}
        )
        scorer.engine = OpenAIEngine(scorer.config, api_key=SECRET, backoff=0.05)
        return score_dataset(digits.select(range(12)), scorer, progress=False)

    short = served(2)
    truncated, _ = assert_finish_reasons_are_real(short, served(8))  # each row's seed is sent: same streams
    assert sum(short["num_truncated"]) == truncated


@pytest.fixture(scope="module")
def thinking_server(thinking_lm):
    process, url = start_openai_server(thinking_lm)
    yield url
    process.kill()
    process.wait()


def test_chat_template_kwargs_reach_the_served_template(thinking_server, thinking_lm):
    rows = Dataset.from_dict({"problem": [f"Which digit comes after {d}?" for d in range(4)], "solution": ["0"] * 4})
    options = {"image_column": None, "temperature": 0.0, "num_rollouts": 1, "max_new_tokens": 6, "keep_rollouts": True}
    results = {}
    for kwargs in ({}, {"enable_thinking": False}):
        scorer = score_difficulty(
            str(thinking_lm), backend="openai", api_base=thinking_server, chat_template_kwargs=kwargs, **options
        )
        scorer.engine = OpenAIEngine(scorer.config, backoff=0.05)
        served = score_dataset(rows, scorer, progress=False)
        local = score_dataset(
            rows, score_difficulty(str(thinking_lm), chat_template_kwargs=kwargs, **options), progress=False
        )
        assert served["rollouts"] == local["rollouts"]  # greedy: the same prompt gives the same answer
        assert served["rollout_finish_reasons"] == local["rollout_finish_reasons"]
        results[json.dumps(kwargs)] = served["rollouts"]
    assert results["{}"] != results['{"enable_thinking": false}']


# -- one request per rollout, each with its own seed ----------------------------------------------


def coin(completion, reference):
    """About half of the (random) answers right, so most rows are medium."""
    return float(sum(map(ord, completion)) % 2 == 0)


def test_each_rollout_is_its_own_request_so_adaptive_rounds_are_a_prefix_of_the_full_draw(server, trained_vlm, digits):
    rows = digits.select(range(12))
    options = {"num_rollouts": 8, "max_new_tokens": 4, "verifier": coin, "keep_rollouts": True, "temperature": 3.0}
    full = score_dataset(rows, scorer_for(trained_vlm, server, **options), progress=False)
    before = httpx.get(server + "/stats").json()["requests"]
    again = score_dataset(rows, scorer_for(trained_vlm, server, max_concurrency=4, **options), progress=False)
    assert httpx.get(server + "/stats").json()["requests"] - before == 12 * 8  # n=1: one request per rollout
    assert again["rollouts"] == full["rollouts"]
    adaptive = score_dataset(rows, scorer_for(trained_vlm, server, adaptive=True, **options), progress=False)
    assert sum(adaptive["num_rollouts"]) < sum(full["num_rollouts"])
    for index, (whole, row) in enumerate(zip(full, adaptive)):
        assert row["rollouts"] == whole["rollouts"][: row["num_rollouts"]], f"row {index}"
        assert bucket_of(row["difficulty"]) == bucket_of(whole["difficulty"]), f"row {index}"
