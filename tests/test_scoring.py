import json
import os
import pickle
import subprocess
import sys
import textwrap

import pytest
import torch
from datasets import Dataset
from datasets.fingerprint import Hasher

import difficulty_curation.scoring as scoring
from difficulty_curation import ColumnNotFoundError, ModelLoadError, RowFailedError, score_difficulty
from difficulty_curation.runners.in_memory import score_dataset
from difficulty_curation.stats import summarize
from difficulty_curation.verifiers import get_verifier

FAST = {"num_rollouts": 4, "max_new_tokens": 4}


def test_map_adds_typed_difficulty_columns_and_keeps_the_originals(tiny_vlm, digits):
    scored = digits.map(score_difficulty(str(tiny_vlm), **FAST), batched=True, batch_size=8)
    features = scored.features
    assert features["difficulty"].dtype == "float32"
    assert features["num_correct"].dtype == "int32" and features["num_rollouts"].dtype == "int32"
    assert features["difficulty_error"].dtype == "string"
    assert "rollouts" not in features and "rollout_scores" not in features
    for column in digits.column_names:
        assert scored.features[column] == digits.features[column]
    assert scored["solution"] == digits["solution"] and scored["problem"] == digits["problem"]


def test_difficulty_is_the_fraction_of_wrong_rollouts(trained_vlm, digits):
    scored = digits.map(score_difficulty(str(trained_vlm), num_rollouts=8, max_new_tokens=4), batched=True)
    for row in scored:
        assert row["num_rollouts"] == 8
        assert row["difficulty"] == pytest.approx(1 - row["num_correct"] / row["num_rollouts"])
        assert 0.0 <= row["difficulty"] <= 1.0
    # the cold-started model reads digits far better than chance (10%), so buckets carry signal
    accuracy = sum(scored["num_correct"]) / (8 * len(scored))
    assert accuracy > 0.3


def test_kept_rollouts_reverify_to_num_correct(trained_vlm, digits):
    scorer = score_difficulty(str(trained_vlm), keep_rollouts=True, max_new_tokens=4)
    scored = digits.map(scorer, batched=True, batch_size=12)
    assert scored.features["rollout_scores"].feature.dtype == "float32"
    exact = get_verifier("exact")
    for row in scored:
        assert len(row["rollouts"]) == len(row["rollout_scores"]) == row["num_rollouts"] == 8
        rescored = [exact(completion, row["solution"]) for completion in row["rollouts"]]
        assert rescored == pytest.approx(row["rollout_scores"])
        assert sum(score >= 0.5 for score in rescored) == row["num_correct"]


def test_same_seed_gives_the_same_difficulty_and_another_seed_other_rollouts(tiny_vlm, digits):
    def run(seed):
        scorer = score_difficulty(str(tiny_vlm), keep_rollouts=True, seed=seed, **FAST)
        return digits.map(scorer, batched=True, batch_size=8)

    first, again, other = run(0), run(0), run(1)
    assert first["difficulty"] == again["difficulty"]
    assert first["rollouts"] == again["rollouts"]
    assert first["rollouts"] != other["rollouts"]


def test_the_model_is_loaded_once_per_scorer(monkeypatch, tiny_vlm, digits):
    loads = []
    original = scoring.load_engine

    def counting_load(config):
        loads.append(config.model)
        return original(config)

    monkeypatch.setattr(scoring, "load_engine", counting_load)
    scorer = score_difficulty(str(tiny_vlm), **FAST)
    digits.map(scorer, batched=True, batch_size=4)
    digits.map(scorer, batched=True, batch_size=6, load_from_cache_file=False)
    assert loads == [str(tiny_vlm)]


def test_pickling_keeps_the_configuration_and_never_the_model(tiny_vlm, digits):
    scorer = score_difficulty(str(tiny_vlm), **FAST)
    before = Hasher.hash(scorer)
    digits.select(range(2)).map(scorer, batched=True)
    assert scorer.engine_loaded
    payload = pickle.dumps(scorer)
    assert len(payload) < 5_000  # the model weights alone are hundreds of KB
    assert Hasher.hash(scorer) == before
    clone = pickle.loads(payload)
    assert clone.config == scorer.config and not clone.engine_loaded


def test_the_fingerprint_is_the_same_in_a_new_process():
    scorer = score_difficulty("my-org/my-vlm", num_rollouts=3, temperature=0.7, verifier="choice")
    code = textwrap.dedent(
        """
        from datasets.fingerprint import Hasher
        from difficulty_curation import score_difficulty
        print(Hasher.hash(score_difficulty("my-org/my-vlm", num_rollouts=3, temperature=0.7, verifier="choice")))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == Hasher.hash(scorer)
    assert Hasher.hash(score_difficulty("my-org/my-vlm", num_rollouts=4)) != Hasher.hash(scorer)


def test_a_second_identical_map_in_a_fresh_process_hits_the_datasets_cache(tiny_vlm, digits, tmp_path):
    data_file = tmp_path / "digits.parquet"
    digits.to_parquet(str(data_file))
    code = textwrap.dedent(
        """
        import json, sys
        from datasets import load_dataset
        from difficulty_curation import score_difficulty
        ds = load_dataset("parquet", data_files=sys.argv[1], split="train", cache_dir=sys.argv[2])
        scorer = score_difficulty(sys.argv[3], num_rollouts=2, max_new_tokens=4)
        scored = ds.map(scorer, batched=True, batch_size=8)
        print(json.dumps({"model_loaded": scorer.engine_loaded,
                          "cache_files": [f["filename"] for f in scored.cache_files],
                          "difficulty": scored["difficulty"][:]}))
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    command = [sys.executable, "-c", code, str(data_file), str(tmp_path / "cache"), str(tiny_vlm)]
    runs = [
        json.loads(subprocess.run(command, capture_output=True, text=True, check=True, env=env).stdout.splitlines()[-1])
        for _ in range(2)
    ]
    assert runs[0]["model_loaded"] is True
    assert runs[1]["model_loaded"] is False  # nothing was generated: the cached result was reused
    assert runs[0]["cache_files"] == runs[1]["cache_files"]
    assert runs[0]["difficulty"] == runs[1]["difficulty"]


def test_bad_rows_get_no_difficulty_and_a_reason_while_the_rest_are_scored(tiny_vlm, digits_with_bad_rows):
    scored = score_dataset(digits_with_bad_rows, score_difficulty(str(tiny_vlm), **FAST), batch_size=4, progress=False)
    errors = scored["difficulty_error"]
    assert errors[1] == "image: image is missing (None)"
    assert errors[3] == "image: image cannot be decoded (not a recognised image format)"
    assert errors[5] == "solution: answer is missing (None)"
    assert errors[6] == "problem: prompt is empty"
    difficulty, num_rollouts = scored["difficulty"][:], scored["num_rollouts"][:]
    for index in (1, 3, 5, 6):
        assert difficulty[index] is None and num_rollouts[index] is None
    for index in (0, 2, 4, 7):
        assert errors[index] == "" and num_rollouts[index] == 4
    summary = summarize(scored)
    assert summary.num_failed == 4 and summary.num_scored == 4
    # images come back decoded, as they went in
    assert scored.features["image"] == digits_with_bad_rows.features["image"]
    assert scored[0]["image"].size == (8, 8)  # row 0's image is intact


def test_a_prompt_longer_than_the_context_is_a_failed_row(tiny_vlm, digits):
    rows = digits.select(range(3)).to_list()
    rows[1]["problem"] = "digit " * 600
    dataset = Dataset.from_list(rows, features=digits.features)
    scored = score_dataset(dataset, score_difficulty(str(tiny_vlm), **FAST), progress=False)
    assert "exceeds the model's context of 512" in scored[1]["difficulty_error"]
    assert scored[0]["num_rollouts"] == scored[2]["num_rollouts"] == 4


def test_a_missing_column_fails_at_once_listing_the_columns(empty_model, digits):
    scorer = score_difficulty(str(empty_model), answer_column="label")
    with pytest.raises(ColumnNotFoundError, match=r"answer_column='label' is not a column.*image, problem, solution"):
        score_dataset(digits, scorer, progress=False)
    assert not scorer.engine_loaded
    with pytest.raises(ColumnNotFoundError, match="'label'"):
        digits.map(scorer, batched=True)


def test_a_model_path_that_does_not_exist_is_a_clear_error(tmp_path):
    scorer = score_difficulty(str(tmp_path / "no-such-model"))
    with pytest.raises(ModelLoadError, match="no-such-model"):
        scorer.engine  # noqa: B018 - loading is the behaviour under test


def test_text_only_rows_work_with_a_causal_lm(tiny_lm):
    dataset = Dataset.from_dict({"problem": ["What is 2 + 2?", "Name a colour."], "solution": ["4", "red"]})
    scorer = score_difficulty(str(tiny_lm), image_column=None, keep_rollouts=True, **FAST)
    scored = dataset.map(scorer, batched=True)
    assert scored["num_rollouts"] == [4, 4] and all(len(r) == 4 for r in scored["rollouts"])


def test_rows_with_several_images_are_scored(tiny_vlm, digits):
    pairs = Dataset.from_dict(
        {
            "images": [[digits[0]["image"], digits[1]["image"]], [digits[2]["image"]]],
            "problem": ["Which digits?", "Which digit?"],
            "solution": ["0 1", "2"],
        }
    )
    scored = pairs.map(score_difficulty(str(tiny_vlm), image_column="images", **FAST), batched=True)
    assert scored["difficulty_error"] == ["", ""] and scored["num_rollouts"] == [4, 4]


def test_a_custom_callable_verifier_decides_correctness(tiny_vlm, digits):
    def always_right(completion: str, reference: str) -> float:
        return 1.0

    scored = digits.map(score_difficulty(str(tiny_vlm), verifier=always_right, **FAST), batched=True)
    assert set(scored["difficulty"]) == {0.0}


def test_a_verifier_that_raises_fails_only_its_row(tiny_vlm, digits):
    rows = digits.select(range(4))
    unjudgeable = rows[0]["solution"]

    def picky(completion: str, reference: str) -> float:
        if reference == unjudgeable:
            raise ValueError("cannot judge this label")
        return 0.0

    scored = rows.map(score_difficulty(str(tiny_vlm), verifier=picky, **FAST), batched=True)
    for solution, difficulty, error in zip(scored["solution"], scored["difficulty"], scored["difficulty_error"]):
        if solution == unjudgeable:
            assert difficulty is None and "cannot judge this label" in error and error.startswith("solution: ")
        else:
            assert difficulty == 1.0 and error == ""
    assert scored["difficulty"][1:].count(1.0) >= 1


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_transformers_backend_runs_on_cuda(tiny_vlm, digits):
    scorer = score_difficulty(str(tiny_vlm), **FAST)
    scored = digits.map(scorer, batched=True)
    assert scorer.engine.device == "cuda" and scored["num_rollouts"] == [4] * len(digits)


def test_score_dataset_records_provenance_in_the_dataset_info(tiny_vlm, digits):
    from difficulty_curation.provenance import read_provenance

    scored = score_dataset(digits.select(range(2)), score_difficulty(str(tiny_vlm), **FAST), progress=False)
    record = read_provenance(scored)
    assert record["model"] == str(tiny_vlm) and record["num_rollouts"] == 4 and record["max_new_tokens"] == 4
    assert read_provenance(digits) is None


def test_a_run_copy_shares_the_engine_and_leaves_the_scorer_unchanged(tiny_vlm):
    scorer = score_difficulty(str(tiny_vlm), num_rollouts=2, max_new_tokens=2)
    run = scorer.for_run(fail_fast=True, on_batch=print)
    assert run.engine is scorer.engine  # loaded once, for both
    assert (scorer.fail_fast, scorer.on_batch, scorer.rollout_cache) == (False, None, None)
    assert (run.fail_fast, run.on_batch) == (True, print)


def _chat_rows() -> Dataset:
    questions = ["What is 2 + 2?", "Name a colour.", "   ", "Spell cat."]
    return Dataset.from_dict(
        {"problem": [[{"role": "user", "content": q}] for q in questions], "solution": ["4", "red", "x", "cat"]}
    )


MAP_CASES = {
    "text rows": (
        "tiny_lm",
        lambda digits: Dataset.from_dict(
            {"problem": ["What is 2 + 2?", "Name a colour.", "   ", "Spell cat."], "solution": ["4", "red", "x", "cat"]}
        ),
        {"image_column": None},
    ),
    "chat-message rows": ("tiny_lm", lambda digits: _chat_rows(), {"image_column": None}),
    "image rows": ("tiny_vlm", lambda digits: digits.select(range(6)), {}),
    "rows of several images": (
        "tiny_vlm",
        lambda digits: Dataset.from_dict(
            {
                "images": [[digits[0]["image"], digits[1]["image"]], [digits[2]["image"]], []],
                "problem": ["Which digits?", "Which digit?", "No image here?"],
                "solution": ["0 1", "2", "3"],
            }
        ),
        {"image_column": "images"},
    ),
}


@pytest.mark.parametrize("case", sorted(MAP_CASES))
def test_map_without_batched_scores_each_row_as_a_batched_map_does(case, request, digits):
    model, rows, options = MAP_CASES[case]
    dataset = rows(digits)
    scorer = score_difficulty(str(request.getfixturevalue(model)), keep_rollouts=True, **options, **FAST)
    batched = dataset.map(scorer, batched=True, batch_size=3, load_from_cache_file=False)
    one_by_one = dataset.map(scorer, load_from_cache_file=False)  # the usage the dataset card shows first
    assert one_by_one.to_list() == batched.to_list()
    assert len({json.dumps(r) for r in batched["rollouts"] if r}) > 1  # sampled rollouts, not one greedy answer


def test_map_without_batched_names_the_row_that_fails_with_fail_fast(tiny_lm):
    dataset = Dataset.from_dict({"problem": ["What is 2 + 2?", "  "], "solution": ["4", "x"]})
    scorer = score_difficulty(str(tiny_lm), image_column=None, **FAST).for_run(fail_fast=True)
    with pytest.raises(RowFailedError, match=r"^row 1: problem"):
        dataset.map(scorer, with_indices=True, load_from_cache_file=False)


def test_an_iterable_dataset_is_scored_as_the_dataset_is(tiny_vlm, digits):
    rows = digits.select(range(6))
    scorer = score_difficulty(str(tiny_vlm), keep_rollouts=True, **FAST)
    expected = _scores(rows.map(scorer, batched=True, batch_size=4, load_from_cache_file=False))
    assert _scores(rows.to_iterable_dataset().map(scorer, batched=True, batch_size=4)) == expected
    assert _scores(rows.to_iterable_dataset().map(scorer)) == expected


def _scores(rows) -> list[dict]:
    """Each row's columns but its image, as plain Python values (a streamed row holds numpy scalars)."""
    plain = [{name: value for name, value in row.items() if name != "image"} for row in rows]
    return json.loads(json.dumps(plain, default=lambda value: value.item()))


def test_map_with_two_processes_gives_the_scores_of_one(tiny_vlm, digits, tmp_path):
    # a fresh process: a parent that has run torch's threads cannot fork workers that use them
    digits.select(range(6)).save_to_disk(str(tmp_path / "rows"))
    code = textwrap.dedent(
        """
        import json, sys
        from datasets import load_from_disk
        from difficulty_curation import score_difficulty
        rows = load_from_disk(sys.argv[1])
        scorer = score_difficulty(sys.argv[2], keep_rollouts=True, num_rollouts=4, max_new_tokens=4)
        runs = [rows.map(scorer, batched=True, batch_size=2, num_proc=n, load_from_cache_file=False) for n in (2, 1)]
        print(json.dumps([run.remove_columns("image").to_list() for run in runs]))
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    command = [sys.executable, "-c", code, str(tmp_path / "rows"), str(tiny_vlm)]
    output = subprocess.run(command, capture_output=True, text=True, check=True, env=env, timeout=600).stdout
    two, one = json.loads(output.splitlines()[-1])
    assert two == one and len(one) == 6
