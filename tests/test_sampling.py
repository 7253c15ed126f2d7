import numpy as np
import pytest
import torch
from scipy import stats

from difficulty_curation import score_difficulty
from difficulty_curation.engines.sampling import CounterSampler, counter_uniform
from difficulty_curation.schema import pass_rate_interval


def test_counter_uniform_is_a_pure_function_of_seed_and_step():
    seeds = np.arange(5, dtype=np.uint64)
    assert np.array_equal(counter_uniform(seeds, 3), counter_uniform(seeds, 3))
    assert not np.array_equal(counter_uniform(seeds, 3), counter_uniform(seeds, 4))
    assert counter_uniform(seeds[2:3], 3)[0] == counter_uniform(seeds, 3)[2]  # independent of neighbours


def test_counter_uniform_is_uniform():
    values = counter_uniform(np.arange(20_000, dtype=np.uint64), 7)
    assert values.min() >= 0.0 and values.max() < 1.0
    assert stats.kstest(values, "uniform").pvalue > 0.001


def _draw(logits, *, temperature=1.0, top_k=0, top_p=1.0, n=20_000):
    scores = torch.tensor([logits] * n, dtype=torch.float32)
    sampler = CounterSampler(range(n), prompt_length=2, temperature=temperature, top_k=top_k, top_p=top_p)
    out = sampler(torch.zeros((n, 2), dtype=torch.long), scores)
    assert torch.isfinite(out).sum(dim=-1).eq(1).all()  # exactly one finite score per sequence
    return torch.bincount(out.argmax(dim=-1), minlength=len(logits)).numpy() / n


def test_sampled_frequencies_follow_the_tempered_softmax():
    logits = [2.0, 1.0, 0.0, -1.0]
    expected = torch.softmax(torch.tensor(logits) / 0.7, dim=-1).numpy()
    assert np.allclose(_draw(logits, temperature=0.7), expected, atol=0.015)


def test_top_k_and_top_p_cut_the_tail_like_transformers():
    logits = [2.0, 1.0, 0.0, -1.0]
    top_two = _draw(logits, top_k=2)
    assert top_two[2:].sum() == 0 and np.isclose(top_two[0], 1 / (1 + np.exp(-1)), atol=0.015)
    probs = torch.softmax(torch.tensor(logits), dim=-1).numpy()  # about [0.64, 0.24, 0.09, 0.03]
    nucleus = _draw(logits, top_p=0.8)  # the smallest prefix reaching 0.8: tokens 0 and 1
    assert nucleus[2:].sum() == 0 and np.isclose(nucleus[0], probs[0] / probs[:2].sum(), atol=0.015)
    assert _draw(logits, top_p=0.5)[0] == 1.0  # the top token alone already reaches 0.5


def test_rollouts_do_not_depend_on_batch_size_and_fewer_rollouts_are_a_prefix(trained_vlm, digits):
    def run(batch_size, num_rollouts=8):
        scorer = score_difficulty(str(trained_vlm), num_rollouts=num_rollouts, max_new_tokens=4, keep_rollouts=True)
        return digits.map(scorer, batched=True, batch_size=batch_size, load_from_cache_file=False)

    whole, small_batches, four = run(24), run(5), run(24, num_rollouts=4)
    assert whole["rollouts"] == small_batches["rollouts"]
    assert whole["difficulty"] == small_batches["difficulty"]
    assert [r[:4] for r in whole["rollouts"]] == four["rollouts"]


def test_adaptive_sampling_stops_medium_rows_early_and_agrees_with_full_k(trained_vlm, digits):
    full = digits.map(score_difficulty(str(trained_vlm), max_new_tokens=4, keep_rollouts=True), batched=True)
    scorer = score_difficulty(str(trained_vlm), max_new_tokens=4, keep_rollouts=True, adaptive=True)
    adaptive = digits.map(scorer, batched=True)
    for f, a in zip(full, adaptive):
        assert a["rollouts"] == f["rollouts"][: a["num_rollouts"]]  # a prefix of the full-k draw
        full_bucket = "easy" if f["difficulty"] == 0 else "hard" if f["difficulty"] == 1 else "medium"
        adaptive_bucket = "easy" if a["difficulty"] == 0 else "hard" if a["difficulty"] == 1 else "medium"
        assert adaptive_bucket == full_bucket
        if adaptive_bucket == "medium":
            assert 0 < a["num_correct"] < a["num_rollouts"] and a["num_rollouts"] % 2 == 0
        else:
            assert a["num_rollouts"] == 8
    assert sum(adaptive["num_rollouts"]) < sum(full["num_rollouts"])


def test_pass_rate_interval_is_the_jeffreys_interval():
    low, high = pass_rate_interval(4, 8, 0.95)
    assert (low, high) == pytest.approx(stats.beta.ppf([0.025, 0.975], 4.5, 4.5))
    assert low + high == pytest.approx(1.0)  # symmetric at half right
    assert pass_rate_interval(0, 8)[0] == 0.0 and pass_rate_interval(8, 8)[1] == 1.0
    narrow, wide = pass_rate_interval(16, 32), pass_rate_interval(4, 8)
    assert narrow[1] - narrow[0] < wide[1] - wide[0]


def test_pass_rate_columns_bracket_the_point_estimate(trained_vlm, digits):
    scorer = score_difficulty(str(trained_vlm), max_new_tokens=4, pass_rate_interval=0.9)
    scored = digits.map(scorer, batched=True)
    assert scored.features["pass_rate_low"].dtype == "float32"
    for row in scored:
        rate = 1 - row["difficulty"]
        assert row["pass_rate_low"] <= rate + 1e-6 and rate - 1e-6 <= row["pass_rate_high"]


@pytest.mark.parametrize("fixture", ["trained_vlm", "tiny_lm"])
def test_shared_prefill_gives_the_same_rollouts_as_prefilling_each_rollout(fixture, request, digits):
    model = request.getfixturevalue(fixture)
    rows = digits if fixture == "trained_vlm" else digits.remove_columns("image")
    image_column = "image" if fixture == "trained_vlm" else None

    def run(shared):
        scorer = score_difficulty(str(model), max_new_tokens=4, keep_rollouts=True, image_column=image_column)
        scorer.engine.shared_prefill = shared
        scored = rows.map(scorer, batched=True, batch_size=12, load_from_cache_file=False)
        return scored, scorer.engine.shared_prefill

    (shared, still_shared), (separate, _) = run(True), run(False)
    assert still_shared, "shared prefill fell back to the slow path"
    assert shared["rollouts"] == separate["rollouts"]


def test_length_buckets_group_similar_prompts_and_keep_every_row():
    from difficulty_curation.engines.transformers import length_buckets

    lengths = [10, 400, 12, 11, 390, 13, 9, 10, 11, 12, 14, 420, 10, 11, 12, 13, 15, 16]
    groups = length_buckets(list(range(len(lengths))), lengths)
    assert sorted(i for group in groups for i in group) == list(range(len(lengths)))
    assert [sorted(group) for group in groups][-1] == [1, 4, 11]  # the long prompts pad only each other
    assert all(max(lengths[i] for i in g) <= 1.5 * min(lengths[i] for i in g) for g in groups)
    assert length_buckets([], []) == []


def test_mixed_prompt_lengths_give_the_same_rollouts_as_one_at_a_time(tiny_lm):
    from datasets import Dataset

    prompts = ["2+2?"] * 9 + ["Please add these numbers carefully and explain: " + "1 + " * 60 + "1"] * 9
    rows = Dataset.from_dict({"problem": prompts, "solution": ["4"] * 18})
    scorer = score_difficulty(str(tiny_lm), image_column=None, max_new_tokens=3, keep_rollouts=True)
    together = rows.map(scorer, batched=True, batch_size=18, load_from_cache_file=False)
    alone = rows.map(scorer, batched=True, batch_size=1, load_from_cache_file=False)
    assert together["rollouts"] == alone["rollouts"]
