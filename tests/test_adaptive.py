import json

import pytest
from datasets import load_from_disk
from typer.testing import CliRunner

from difficulty_curation import score_difficulty
from difficulty_curation.cli import app
from difficulty_curation.engines.adaptive import RowDraws
from difficulty_curation.engines.loader import load_engine
from difficulty_curation.errors import RowError
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


# -- adaptive draws in windows (engines.adaptive.RowDraws): the bookkeeping, without an engine ------------


def mixed(position, completions):
    """Decided once the prefix holds a "right" and a "wrong" rollout."""
    return {"right", "wrong"} <= set(completions)


def draw_in_order(draws, answers, finish_order):
    """Run `draws` like an engine: submit windows, then finish in-flight windows in `finish_order`'s order;
    returns the windows ever submitted."""
    submitted, in_flight = [], []
    while not draws.done:
        new = draws.submit_next()
        submitted += new
        in_flight += new
        assert in_flight, "open rows but nothing in flight"
        position, start, count = finish_order(in_flight)
        in_flight.remove((position, start, count))
        draws.finish(position, start, answers[position][start : start + count])
    return submitted


ANSWERS = {
    0: ["right", "right", "wrong", "right", "wrong", "wrong", "right", "right"],  # decided at 3
    1: ["wrong"] * 8,  # never decided: all 8
    2: ["wrong", "right", "right", "right", "wrong", "wrong", "wrong", "wrong"],  # decided at 2
    3: ["right", "right", "right", "right", "right", "wrong", "right", "right"],  # decided at 6
}


@pytest.mark.parametrize("order", ["first", "last", "shuffled"])
def test_a_row_is_decided_at_the_same_prefix_whatever_order_its_windows_finish_in(order):
    import random

    chooser = random.Random(0)
    finish_order = {
        "first": lambda flight: flight[0],
        "last": lambda flight: flight[-1],
        "shuffled": lambda flight: chooser.choice(flight),
    }[order]
    draws = RowDraws(ANSWERS, 8, first_window=2, window=3, is_decided=mixed)
    draw_in_order(draws, ANSWERS, finish_order)
    assert draws.outcomes() == {0: ANSWERS[0][:3], 1: ANSWERS[1], 2: ANSWERS[2][:2], 3: ANSWERS[3][:6]}


def test_a_row_gets_its_next_window_only_once_the_last_one_left_it_undecided():
    draws = RowDraws([0], 8, first_window=2, window=4, is_decided=mixed)
    assert draws.submit_next() == [(0, 0, 2)]
    assert draws.submit_next() == []  # its first window is still drawing
    draws.finish(0, 0, ["right", "right"])
    assert draws.submit_next() == [(0, 2, 4)]
    draws.finish(0, 2, ["right", "wrong", "right", "right"])  # decided at 4: rollouts 4 and 5 are dropped
    assert draws.outcomes() == {0: ["right", "right", "right", "wrong"]} and draws.done
    assert draws.submit_next() == []


def test_the_last_window_takes_only_what_is_left_of_k():
    draws = RowDraws([0], 5, first_window=4, window=4, is_decided=mixed)
    draws.submit_next()
    draws.finish(0, 0, ["wrong"] * 4)
    assert draws.submit_next() == [(0, 4, 1)]


def test_without_is_decided_a_row_is_one_window_of_all_its_rollouts_numbered_from_first_rollout():
    draws = RowDraws([5, 7], 3, first_rollout=4)
    assert draws.submit_next() == [(5, 4, 3), (7, 4, 3)]
    draws.finish(5, 4, ["r4", "r5", "r6"])
    assert draws.completed() == {5: ["r4", "r5", "r6"]} and not draws.done  # row 7 is still drawing


def test_a_failed_row_gives_its_error_and_keeps_no_rollouts():
    draws = RowDraws([0, 1], 4, first_window=2, is_decided=mixed)
    draws.submit_next()
    error = RowError("problem", "rejected")
    draws.fail(1, error)
    draws.finish(1, 0, ["right", "wrong"])  # finished after its row failed: not kept
    assert draws.outcomes() == {1: error} and draws.completed() == {}


def test_a_retried_window_is_submitted_again_whole():
    draws = RowDraws([0], 2)
    draws.submit_next()
    draws.retry(0, 0)
    assert draws.submit_next() == [(0, 0, 2)]
    draws.finish(0, 0, ["a", "b"])
    assert draws.outcomes() == {0: ["a", "b"]}


def test_the_scorer_uses_an_engines_own_adaptive_draw_and_stores_what_it_drew(tiny_vlm, digits, full_draw, tmp_path):
    from difficulty_curation.engines.base import AdaptiveEngine
    from difficulty_curation.rollout_cache import RolloutCache

    class Streaming:  # the transformers engine behind generate_adaptive, judging rollouts one at a time
        def __init__(self, inner):
            self.inner, self.calls = inner, 0

        def generate(self, requests, num_rollouts, *, first_rollout=0):
            raise AssertionError("adaptive must not go through rounds when the engine streams")

        def generate_adaptive(self, requests, num_rollouts, is_decided):
            self.calls += 1
            draws = RowDraws(range(len(requests)), num_rollouts, first_window=2, window=2, is_decided=is_decided)
            while not draws.done:
                for position, start, count in draws.submit_next()[::-1]:  # finishing out of order
                    (outcome,) = self.inner.generate([requests[position]], count, first_rollout=start)
                    draws.finish(position, start, outcome)
            return [draws.outcomes()[position] for position in range(len(requests))]

    scorer = scorer_for(tiny_vlm, keep_rollouts=True, adaptive=True)
    engine = Streaming(load_engine(scorer.config))
    assert isinstance(engine, AdaptiveEngine)
    cache = RolloutCache(tmp_path / "rollouts.sqlite")
    run = scorer.for_run(rollout_cache=cache)
    run.engine = engine
    adaptive = digits.select(range(12)).map(run, batched=True, batch_size=6, load_from_cache_file=False)
    assert engine.calls == 2 and len(cache) == 12
    stopped_early = 0
    for full, row in zip(full_draw, adaptive):
        assert row["rollouts"] == full["rollouts"][: row["num_rollouts"]]
        assert bucket(row["difficulty"]) == bucket(full["difficulty"])
        stopped_early += row["num_rollouts"] < 8
    assert stopped_early > 0
