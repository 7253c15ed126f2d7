import logging

import pytest
from datasets import Dataset, DatasetDict, Features, Value

from difficulty_curation import ConfigError
from difficulty_curation.errors import ColumnNotFoundError
from difficulty_curation.transforms import bucket_of, filter_difficulty, stratify, stratify_buckets, unscored_count

DIFFICULTIES = [0.0, 0.125, 0.5, 1.0, None, 0.875, 0.0, 1.0, 0.25, None, 0.75, 0.375]


@pytest.fixture()
def scored() -> Dataset:
    features = Features({"id": Value("int32"), "difficulty": Value("float32")})
    return Dataset.from_dict({"id": list(range(len(DIFFICULTIES))), "difficulty": DIFFICULTIES}, features=features)


def _ids(dataset: Dataset) -> set[int]:
    return set(dataset["id"])


def test_bucket_of_follows_the_paper():
    assert [bucket_of(v) for v in (0.0, 0.125, 0.875, 1.0, None)] == ["easy", "medium", "medium", "hard", None]


def test_filter_by_one_bucket(scored):
    assert _ids(filter_difficulty(scored, "medium")) == {1, 2, 5, 8, 10, 11}
    assert _ids(filter_difficulty(scored, "easy")) == {0, 6}
    assert _ids(filter_difficulty(scored, "hard")) == {3, 7}


def test_filter_by_several_buckets_gives_the_papers_sft_em_set(scored):
    assert _ids(filter_difficulty(scored, ["easy", "medium"])) == {0, 1, 2, 5, 6, 8, 10, 11}


def test_filter_by_range_is_inclusive(scored):
    assert _ids(filter_difficulty(scored, min=0.25, max=0.75)) == {2, 8, 10, 11}
    assert _ids(filter_difficulty(scored, "medium", max=0.25)) == {1, 8}


def test_unscored_rows_are_excluded_and_counted(scored, caplog):
    with caplog.at_level(logging.WARNING):
        kept = filter_difficulty(scored)
    assert len(kept) == 10 and None not in kept["difficulty"]
    assert "2 of 12 rows have no difficulty" in caplog.text
    assert unscored_count(scored) == 2


def test_filter_is_fingerprinted_deterministically(scored):
    assert filter_difficulty(scored, "medium")._fingerprint == filter_difficulty(scored, "medium")._fingerprint
    assert filter_difficulty(scored, "medium")._fingerprint != filter_difficulty(scored, "easy")._fingerprint


def test_filter_works_on_every_split_of_a_dataset_dict(scored):
    kept = filter_difficulty(DatasetDict(train=scored, test=scored.select(range(4))), "hard")
    assert _ids(kept["train"]) == {3, 7} and _ids(kept["test"]) == {3}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"bucket_or_buckets": "tricky"}, "unknown bucket"),
        ({"min": 0.8, "max": 0.2}, "min=0.8 is greater than max=0.2"),
        ({"min": -0.1}, "min must be a number in"),
    ],
)
def test_filter_rejects_bad_options(scored, options, message):
    with pytest.raises(ConfigError, match=message):
        filter_difficulty(scored, **options)


def _assert_partition(buckets: DatasetDict, scored: Dataset) -> None:
    seen: list[int] = []
    for part in buckets.values():
        seen.extend(part["id"])
    assert len(seen) == len(set(seen)), "buckets overlap"
    scored_ids = {i for i, d in zip(scored["id"], scored["difficulty"]) if d is not None}
    assert set(seen) == scored_ids, "buckets do not cover every scored row"


def test_paper_stratification_is_a_partition_of_scored_rows(scored):
    buckets = stratify(scored)
    assert list(buckets) == ["easy", "medium", "hard"]
    _assert_partition(buckets, scored)
    assert {name: len(part) for name, part in buckets.items()} == {"easy": 2, "medium": 6, "hard": 2}


def test_custom_bins_are_half_open_with_a_closed_last_bin(scored):
    buckets = stratify(scored, bins=[0, 0.25, 0.75, 1])
    assert list(buckets) == ["0-0.25", "0.25-0.75", "0.75-1"]
    _assert_partition(buckets, scored)
    assert _ids(buckets["0-0.25"]) == {0, 1, 6}
    assert _ids(buckets["0.75-1"]) == {3, 5, 7, 10}


def test_quantile_bins_partition_the_rows(scored):
    buckets = stratify(scored, quantiles=3)
    assert list(buckets) == ["q1", "q2", "q3"]
    _assert_partition(buckets, scored)


def test_quantiles_merge_when_ties_leave_no_room():
    constant = Dataset.from_dict({"id": [0, 1, 2], "difficulty": [1.0, 1.0, 1.0]})
    buckets = stratify(constant, quantiles=4)
    assert list(buckets) == ["q1"] and len(buckets["q1"]) == 3


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"bins": [0.5, 0.2, 1.0]}, "strictly increasing"),
        ({"bins": [0.0]}, "at least two edges"),
        ({"bins": [0.0, 2.0]}, r"must lie in \[0, 1\]"),
        ({"quantiles": 0}, "quantiles must be an integer >= 1"),
        ({"bins": [0, 1], "quantiles": 2}, "not both"),
        ({"scheme": "thirds"}, "scheme='thirds' is not known"),
    ],
)
def test_stratify_rejects_bad_options(scored, options, message):
    with pytest.raises(ConfigError, match=message):
        stratify(scored, **options)


def test_stratify_buckets_describe_their_ranges():
    assert [b.describe() for b in stratify_buckets()] == ["[0, 0]", "(0, 1)", "[1, 1]"]


def test_a_dataset_without_difficulty_is_rejected_with_its_columns():
    with pytest.raises(ColumnNotFoundError, match="available columns: a"):
        filter_difficulty(Dataset.from_dict({"a": [1]}), "easy")


def test_filters_honour_an_existing_selection(scored):
    view = scored.select([3, 7, 0])
    assert _ids(filter_difficulty(view, "hard")) == {3, 7}
    assert unscored_count(scored.select([4, 9, 0])) == 2
