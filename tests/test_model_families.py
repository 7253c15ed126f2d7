"""Every model family in the zoo scores the same rollouts however the rows are batched.

Sampled rollouts (not greedy: on a random tiny model greedy hides most differences) on padded
batches: prompts of several lengths in one length group, images of several sizes (so several
image-token counts), a lone long row in a group of its own, text-only rows beside image rows,
and several batches in a row.
"""

from __future__ import annotations

import pytest
from datasets import Dataset, Features, Image, Sequence, Value
from zoo import BUILDERS

from difficulty_curation import score_difficulty
from difficulty_curation.demo import digits_dataset

FAMILIES = list(BUILDERS)
#: Prompt endings of 0-3 extra words: left padding inside a length group.
ENDINGS = ["", " Be careful.", " Look closely please.", " Be careful. Look closely please."]
#: Image sizes with different image-token counts in most families (tiles, patches, any-resolution grids).
SIZES = [(28, 28), (56, 28), (56, 56), (28, 56)]
LONG_PROMPT = "Look closely please. " * 7 + "What digit is shown in the image?"


def padded_rows(with_images: bool) -> Dataset:
    """12 rows: 9 with images of 4 sizes and prompts of 4 lengths, one lone long row, two text-only rows."""
    digits = digits_dataset(num_rows=10)
    rows = []
    for index, row in enumerate(digits):
        problem = LONG_PROMPT if index == 9 else row["problem"] + ENDINGS[index % len(ENDINGS)]
        image = row["image"].convert("RGB").resize(SIZES[index % len(SIZES)])
        rows.append({"image": [image], "problem": problem, "solution": row["solution"]})
    for problem in ("What is 3 + 4? Answer with a single digit.", "What is 2 + 2?"):
        rows.append({"image": [], "problem": problem, "solution": "7" if "3" in problem else "4"})
    if not with_images:
        rows = [{**row, "image": []} for row in rows]
    features = Features({"image": Sequence(Image()), "problem": Value("string"), "solution": Value("string")})
    return Dataset.from_list(rows, features=features)


def coin_verifier(completion: str, reference: str) -> float:
    """Right or wrong by the completion's length: random models get mixed rows, so adaptive stops some early."""
    return float(len(completion) % 2)


def scorer_for(folder, **options):
    options = {"num_rollouts": 4, "max_new_tokens": 4, **options}
    return score_difficulty(str(folder), keep_rollouts=True, **options)


def rollouts(scorer, rows: Dataset, batch_size: int) -> list[list[str]]:
    scored = rows.map(scorer, batched=True, batch_size=batch_size, load_from_cache_file=False)
    assert all(error == "" for error in scored["difficulty_error"]), "; ".join(
        e for e in scored["difficulty_error"] if e
    )
    return scored["rollouts"]


@pytest.fixture(scope="module")
def family_runs(zoo) -> dict[str, dict]:
    """Per family: the rows and one scorer (the model loads once), scored at batch sizes 1, 4 and all."""
    runs = {}
    for family, (_, with_images) in BUILDERS.items():
        rows = padded_rows(with_images)
        scorer = scorer_for(zoo[family])
        by_batch = {size: rollouts(scorer, rows, size) for size in (len(rows), 4, 1)}
        runs[family] = {"rows": rows, "scorer": scorer, "by_batch": by_batch}
    return runs


@pytest.mark.parametrize("family", FAMILIES)
def test_rollouts_do_not_depend_on_the_batch(family, family_runs):
    run = family_runs[family]
    whole, fours, ones = (run["by_batch"][size] for size in (len(run["rows"]), 4, 1))
    assert whole == ones, f"{family}: batch of all rows differs from one row at a time"
    assert fours == ones, f"{family}: batches of 4 differ from one row at a time"
    assert run["scorer"].engine.shared_prefill, f"{family}: shared prefill fell back to prefilling every rollout"


@pytest.mark.parametrize("family", FAMILIES)
def test_shared_prefill_gives_the_tokens_of_plain_generate(family, family_runs, zoo):
    run = family_runs[family]
    plain = scorer_for(zoo[family])
    plain.engine.shared_prefill = False  # `generate(num_return_sequences=k)`, prefilling every rollout
    assert rollouts(plain, run["rows"], len(run["rows"])) == run["by_batch"][len(run["rows"])]


@pytest.mark.parametrize("family", FAMILIES)
def test_adaptive_draws_a_prefix_of_the_full_draw(family, family_runs, zoo):
    rows = family_runs[family]["rows"]
    full = scorer_for(zoo[family], num_rollouts=8, verifier=coin_verifier)
    adaptive = scorer_for(zoo[family], num_rollouts=8, adaptive=True, verifier=coin_verifier)
    full_draw = rollouts(full, rows, len(rows))
    adaptive_draw = rows.map(adaptive, batched=True, batch_size=len(rows), load_from_cache_file=False)
    for drawn, reference, count in zip(adaptive_draw["rollouts"], full_draw, adaptive_draw["num_rollouts"]):
        assert drawn == reference[:count]
    assert sum(adaptive_draw["num_rollouts"]) < 8 * len(rows), "no row stopped early: the test shows nothing"
