import json

import pytest
from datasets import load_from_disk
from typer.testing import CliRunner

from difficulty_curation import score_difficulty
from difficulty_curation.cli import app
from difficulty_curation.engines.loader import load_engine
from difficulty_curation.provenance import read_provenance
from difficulty_curation.scoring import ADAPTIVE_ROUND, adaptive_rounds


class PrefillCounter:
    """Counts, per forward pass of the real model, the rows that run more than one new token (a prefill)."""

    def __init__(self, model):
        self.rows = 0
        self.calls = 0
        self.handle = model.register_forward_pre_hook(self._count, with_kwargs=True)

    def _count(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is not None and ids.shape[1] > 1:
            self.rows += ids.shape[0]
            self.calls += 1


def coin(completion, reference):
    """A verifier that calls about half of the (random) answers right, so most rows are medium.

    The untrained tiny VLM answers at random; this verifier makes its buckets mixed without a cold
    start. Whether adaptive rollouts are a prefix of the full draw does not depend on the model.
    """
    return float(sum(map(ord, completion)) % 2 == 0)


def bucket(difficulty):
    return "easy" if difficulty == 0 else "hard" if difficulty == 1 else "medium"


def scorer_for(model, **options):
    return score_difficulty(str(model), max_new_tokens=4, verifier=coin, **options)


@pytest.fixture(scope="module")
def full_draw(tiny_vlm, digits):
    return digits.map(scorer_for(tiny_vlm, keep_rollouts=True), batched=True, load_from_cache_file=False)


def test_adaptive_rollouts_are_the_first_rollouts_of_the_full_draw_row_by_row(tiny_vlm, digits, full_draw):
    scorer = scorer_for(tiny_vlm, keep_rollouts=True, adaptive=True)
    adaptive = digits.map(scorer, batched=True, load_from_cache_file=False)
    stopped_early = 0
    for index, (full, row) in enumerate(zip(full_draw, adaptive)):
        drawn = row["num_rollouts"]
        assert row["rollouts"] == full["rollouts"][:drawn], f"row {index}"
        assert row["rollout_scores"] == full["rollout_scores"][:drawn], f"row {index}"
        assert bucket(row["difficulty"]) == bucket(full["difficulty"]), f"row {index}"
        stopped_early += drawn < 8
    assert stopped_early > 0  # the rounds really stopped some rows: the prefix check is not vacuous


def test_adaptive_mode_prefills_each_prompt_once_per_run(tiny_vlm, digits):
    scorer = scorer_for(tiny_vlm, adaptive=True)
    counter = PrefillCounter(scorer.engine.model)
    scored = digits.map(scorer, batched=True, batch_size=12, load_from_cache_file=False)
    counter.handle.remove()
    assert max(scored["num_rollouts"]) > ADAPTIVE_ROUND  # some rows needed several rounds
    assert counter.rows == len(digits)  # yet each row's prompt (image included) ran through the model once
    assert counter.calls == 2  # one prefill per batch of 12 (all digit prompts have one length)


def test_full_k_also_prefills_each_prompt_once(tiny_vlm, digits):
    scorer = scorer_for(tiny_vlm)
    counter = PrefillCounter(scorer.engine.model)
    digits.map(scorer, batched=True, load_from_cache_file=False)
    counter.handle.remove()
    assert counter.rows == len(digits)


def test_adaptive_without_a_reusable_cache_gives_the_same_rollouts(tiny_vlm, digits, full_draw):
    scorer = scorer_for(tiny_vlm, keep_rollouts=True, adaptive=True)
    scorer.engine.shared_prefill = False  # the path for models whose generate() rejects a prefilled cache
    adaptive = digits.map(scorer, batched=True, load_from_cache_file=False)
    for full, row in zip(full_draw, adaptive):
        assert row["rollouts"] == full["rollouts"][: row["num_rollouts"]]


def test_engines_without_prefill_are_asked_for_one_round_at_a_time(tiny_vlm, digits, full_draw):
    class GenerateOnly:  # a wrapper, like the OpenAI or vLLM engines: only `generate`
        def __init__(self, inner):
            self.inner = inner
            self.calls = []

        def generate(self, requests, num_rollouts, *, first_rollout=0):
            self.calls.append((len(requests), num_rollouts, first_rollout))
            return self.inner.generate(requests, num_rollouts, first_rollout=first_rollout)

    scorer = scorer_for(tiny_vlm, keep_rollouts=True, adaptive=True)
    scorer.engine = engine = GenerateOnly(load_engine(scorer.config))
    adaptive = digits.map(scorer, batched=True, load_from_cache_file=False)
    assert [first for _, _, first in engine.calls] == list(range(0, 8, ADAPTIVE_ROUND))[: len(engine.calls)]
    assert [size for size, _, _ in engine.calls] == sorted((size for size, _, _ in engine.calls), reverse=True)
    for full, row in zip(full_draw, adaptive):
        assert row["rollouts"] == full["rollouts"][: row["num_rollouts"]]


@pytest.mark.parametrize("num_rollouts", [1, 2, 7, 8, 16])
def test_adaptive_rounds_add_up_to_k(num_rollouts):
    rounds = adaptive_rounds(num_rollouts)
    assert sum(rounds) == num_rollouts and all(size >= 1 for size in rounds)


def test_curate_score_passes_adaptive_and_pass_rate_interval_to_the_scorer(digits, tiny_vlm, tmp_path):
    data = tmp_path / "digits.parquet"
    digits.to_parquet(str(data))
    out = tmp_path / "scored"
    arguments = ["score", data, "--model", tiny_vlm, "--out", out, "--max-new-tokens", 4, "--quiet", "--json"]
    arguments += ["--adaptive", "--pass-rate-interval", 0.9]
    result = CliRunner().invoke(app, [str(a) for a in arguments], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["num_failed"] == 0
    scored = load_from_disk(str(out))["train"]
    provenance = read_provenance(scored)
    assert provenance["adaptive"] is True and provenance["pass_rate_interval"] == 0.9
    for row in scored:
        rate = 1 - row["difficulty"]
        assert row["pass_rate_low"] <= rate + 1e-6 <= row["pass_rate_high"] + 2e-6


def test_score_help_explains_adaptive_and_pass_rate_interval():
    help_text = CliRunner().invoke(app, ["score", "--help"], terminal_width=200).output
    assert "--adaptive" in help_text and "--pass-rate-interval" in help_text
