"""How the openai backend groups a row's rollouts into requests (tests/openai_test_server.py on 127.0.0.1).

Against a server that seeds the children of an `n=m` request `seed, seed+1, ...` (as `vllm serve` does),
a row's window of rollouts is one request; against any other, one request per rollout. A start-up
probe tells them apart. Either way rollout `j` of a row is the same draw.
"""

import logging

import httpx
import pytest
from helpers import openai_server

from difficulty_curation import score_difficulty
from difficulty_curation.engines.openai import OpenAIEngine, child_seeds_match
from difficulty_curation.provenance import read_provenance
from difficulty_curation.runners.in_memory import score_dataset
from difficulty_curation.transforms import bucket_of


def served(url):
    return httpx.get(url + "/stats").json()["requests"]


@pytest.fixture(scope="module")
def vllm_like(trained_vlm):
    with openai_server(trained_vlm, "--vllm-child-seeds") as url:
        yield url


@pytest.fixture(scope="module")
def other_server(trained_vlm):
    with openai_server(trained_vlm) as url:
        yield url


def scorer_for(model, url, *, child_seeds=None, **options):
    options = {"num_rollouts": 8, "max_new_tokens": 4, "temperature": 3.0, "keep_rollouts": True, **options}
    scorer = score_difficulty(str(model), backend="openai", api_base=url, **options)
    scorer.engine = OpenAIEngine(scorer.config, max_concurrency=4, backoff=0.05)
    scorer.engine.child_seeds = child_seeds  # None: probe the server before the first draw
    return scorer


def coin(completion, reference):
    """About half of the (random) answers right, so most rows are medium."""
    return float(sum(map(ord, completion)) % 2 == 0)


def test_the_probe_reads_vllm_child_seeding_from_two_answers():
    assert child_seeds_match(["a", "b"], ["b"]) is True
    assert child_seeds_match(["a", "b"], ["c"]) is False
    assert child_seeds_match(["a", "a"], ["a"]) is None  # one answer for both seeds: nothing learnt


def test_against_a_server_seeding_children_like_vllm_a_full_draw_is_one_request_per_row(
    vllm_like, trained_vlm, digits, caplog
):
    rows = digits.select(range(6))
    with caplog.at_level(logging.INFO, logger="difficulty_curation"):
        before = served(vllm_like)
        scorer = scorer_for(trained_vlm, vllm_like)
        windows = score_dataset(rows, scorer, progress=False)
    assert scorer.engine.child_seeds is True and served(vllm_like) - before == 6  # k=8 times fewer requests
    assert "one n=m request per row window" in caplog.text
    assert "one n=m request per row window" in read_provenance(windows)["openai_requests"]
    single = score_dataset(rows, scorer_for(trained_vlm, vllm_like, child_seeds=False), progress=False)
    assert windows["rollouts"] == single["rollouts"]  # the same draws as one request per rollout
    assert len({text for rollouts in single["rollouts"] for text in rollouts}) > 8  # really sampled


def test_against_a_server_seeding_children_its_own_way_each_rollout_is_its_own_request(
    other_server, trained_vlm, digits
):
    rows = digits.select(range(3))
    before = served(other_server)
    scorer = scorer_for(trained_vlm, other_server)
    scored = score_dataset(rows, scorer, progress=False)
    assert scorer.engine.child_seeds is False and served(other_server) - before == 3 * 8
    assert read_provenance(scored)["openai_requests"] == "one n=1 request per rollout"


def test_adaptive_rounds_in_window_requests_are_a_prefix_of_the_full_draw(vllm_like, trained_vlm, digits):
    rows = digits.select(range(12))
    full = score_dataset(rows, scorer_for(trained_vlm, vllm_like, verifier=coin), progress=False)
    adaptive = score_dataset(rows, scorer_for(trained_vlm, vllm_like, verifier=coin, adaptive=True), progress=False)
    assert sum(adaptive["num_rollouts"]) < sum(full["num_rollouts"])
    for index, (whole, row) in enumerate(zip(full, adaptive)):
        assert row["rollouts"] == whole["rollouts"][: row["num_rollouts"]], f"row {index}"
        assert bucket_of(row["difficulty"]) == bucket_of(whole["difficulty"]), f"row {index}"


@pytest.fixture(scope="module")
def seedless_server(trained_vlm):
    with openai_server(trained_vlm, "--ignore-seed") as url:
        yield url


def test_adaptive_against_a_server_that_ignores_seed_warns_and_records_it(seedless_server, trained_vlm, digits, caplog):
    with caplog.at_level(logging.WARNING, logger="difficulty_curation"):
        scored = score_dataset(
            digits.select(range(2)), scorer_for(trained_vlm, seedless_server, adaptive=True), progress=False
        )
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert any("ignores the `seed`" in record.getMessage() for record in warnings)
    assert read_provenance(scored)["openai_seed_honoured"] is False


def test_adaptive_against_a_server_that_honours_seed_runs_without_a_warning(other_server, trained_vlm, digits, caplog):
    with caplog.at_level(logging.WARNING, logger="difficulty_curation"):
        scored = score_dataset(
            digits.select(range(2)), scorer_for(trained_vlm, other_server, adaptive=True), progress=False
        )
    assert not [record for record in caplog.records if "seed" in record.getMessage()]
    assert read_provenance(scored)["openai_seed_honoured"] is True


def test_content_answered_as_text_parts_is_judged_as_the_joined_text(other_server, trained_vlm, digits):
    rows = digits.select(range(3))
    with openai_server(trained_vlm, "--content-parts") as parts_url:
        as_parts = score_dataset(rows, scorer_for(trained_vlm, parts_url, child_seeds=False), progress=False)
    as_text = score_dataset(rows, scorer_for(trained_vlm, other_server, child_seeds=False), progress=False)
    assert as_parts["rollouts"] == as_text["rollouts"] and as_parts["difficulty"] == as_text["difficulty"]
    assert not any("[{" in text for rollouts in as_parts["rollouts"] for text in rollouts)  # never Python's repr
