"""Per-rollout seeds (`engines.sampling.rollout_seed`): rollout j of a row is seeded row_seed + j on every backend."""

from __future__ import annotations

import hashlib
import json

from difficulty_curation import score_difficulty
from difficulty_curation.engines.sampling import rollout_seed, row_seed
from difficulty_curation.rollout_cache import rollout_key


def test_rollout_j_of_a_row_is_seeded_row_seed_plus_j():
    base = row_seed(7, "row-hash")
    assert [rollout_seed(7, "row-hash", j) for j in range(5)] == [base + j for j in range(5)]


def test_row_seeds_depend_on_the_run_seed_and_the_rows_content():
    assert row_seed(7, "a") == row_seed(7, "a")
    assert len({row_seed(7, "a"), row_seed(8, "a"), row_seed(7, "b")}) == 3


def test_rollout_seeds_stay_signed_64_bit_integers_for_any_k():
    # vLLM's server and torch take seeds up to 2**63 - 1; row seeds leave room for a million rollouts and more.
    assert max(rollout_seed(seed, str(seed), 10**6) for seed in range(2000)) < 2**63


def test_every_backend_takes_its_seeds_from_the_one_rollout_seed():
    from difficulty_curation.engines import openai, transformers, vllm

    assert openai.rollout_seed is transformers.rollout_seed is vllm.rollout_seed is rollout_seed


def test_the_rollout_cache_key_changed_with_the_seeds_so_old_draws_are_never_reused():
    config = score_difficulty("m").config
    before = hashlib.sha256(json.dumps({**config.rollout_identity(), "content": "h"}, sort_keys=True).encode())
    assert rollout_key(config, "h") != before.hexdigest()
