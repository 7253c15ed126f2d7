from datasets import Dataset, DatasetDict

from difficulty_curation.stats import plot_histogram, summarize


def _scored() -> Dataset:
    return Dataset.from_dict(
        {
            "difficulty": [0.0, 0.5, 0.5, 1.0, None, None],
            "difficulty_error": [
                "",
                "",
                "",
                "",
                "image: image is missing (None)",
                "image: image cannot be decoded (X: y)",
            ],
        }
    )


def test_summary_counts_buckets_histogram_and_failures():
    summary = summarize(_scored())
    assert (summary.num_rows, summary.num_scored, summary.num_failed) == (6, 4, 2)
    assert summary.buckets == {"easy": 1, "medium": 2, "hard": 1}
    assert summary.histogram == [(0.0, 1), (0.5, 2), (1.0, 1)]
    assert summary.failure_reasons == {"image: image is missing": 1, "image: image cannot be decoded": 1}
    assert summary.failed_rows == [(4, "image: image is missing (None)"), (5, "image: image cannot be decoded (X: y)")]


def test_summary_of_a_dataset_dict_adds_up_the_splits():
    summary = summarize(DatasetDict(train=_scored(), test=_scored()))
    assert summary.num_rows == 12 and summary.buckets["medium"] == 4 and summary.histogram[1] == (0.5, 4)


def test_plot_histogram_writes_a_png(tmp_path):
    path = plot_histogram(summarize(_scored()), tmp_path / "plots" / "hist.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
