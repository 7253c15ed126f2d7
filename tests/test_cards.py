import pytest
import yaml
from datasets import Dataset, load_from_disk
from typer.testing import CliRunner

from difficulty_curation.cards import render_card, size_category
from difficulty_curation.cli import app
from difficulty_curation.errors import CurationError


def _front_matter(text: str) -> dict:
    _, yaml_text, _ = text.split("---\n", 2)
    return yaml.safe_load(yaml_text)


def test_the_card_metadata_has_configs_per_bucket_tags_and_size(demo_run):
    card = render_card(load_from_disk(str(demo_run)), "me/digits-dc", license="cc-by-4.0")
    meta = _front_matter(str(card))
    assert [c["config_name"] for c in meta["configs"]] == ["easy", "medium", "hard", "all"]
    assert meta["configs"][1]["data_files"] == [{"split": "train", "path": "medium/train-*"}]
    assert "difficulty-curation" in meta["tags"] and meta["task_categories"] == ["image-text-to-text"]
    assert meta["size_categories"] == "n<1K" and meta["license"] == "cc-by-4.0"


def test_the_card_body_records_the_provenance_counts_and_how_to_load(demo_run, trained_vlm):
    scored = load_from_disk(str(demo_run))
    text = str(render_card(scored, "me/digits-dc"))
    for row in (
        f"| model | `{trained_vlm}` |",
        "| temperature | `0.9` |",
        "| num_rollouts | `4` |",
        "| top_p | `1.0` |",
        "| top_k | `50` |",
        "| max_new_tokens | `4` |",
        "| seed | `0` |",
        "| verifier | `exact` |",
        "| source | `digits/train` |",
        "| model_revision | `not known (a local folder has no commit)` |",
        "| bucket_thresholds | `easy = difficulty in [0, 0], medium = difficulty in (0, 1), hard = difficulty in [1, 1]` |",
    ):
        assert row in text, row
    difficulties = list(scored["difficulty"])
    counts = {"easy": difficulties.count(0.0), "hard": difficulties.count(1.0)}
    counts["medium"] = len(difficulties) - counts["easy"] - counts["hard"]
    assert len(difficulties) == 24 and None not in difficulties
    for bucket, count in counts.items():
        assert f"| {bucket} | {count} | {count / 24:.1%} |" in text, bucket
    assert 'medium_rows = load_dataset("me/digits-dc", "medium")' in text
    assert "![difficulty histogram](difficulty_histogram.png)" in text and "arXiv:2602.10815" in text
    assert "toolkit_version" in text and "scored_at" in text


def test_curate_card_writes_the_card_and_the_histogram(demo_run, tmp_path):
    result = CliRunner().invoke(
        app, ["card", str(demo_run), "--repo-id", "me/x", "--out", str(tmp_path / "c" / "README.md")]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "c" / "difficulty_histogram.png").read_bytes()[:4] == b"\x89PNG"
    assert _front_matter((tmp_path / "c" / "README.md").read_text())["pretty_name"] == "x (curated by difficulty)"


def test_a_dataset_without_provenance_is_refused_with_what_to_do():
    with pytest.raises(CurationError, match=r"no scoring provenance.*curate score"):
        render_card(Dataset.from_dict({"difficulty": [0.5]}), "me/x")


def test_size_categories_follow_the_hub_labels():
    assert [size_category(n) for n in (10, 5_000, 50_000, 2_000_000)] == ["n<1K", "1K<n<10K", "10K<n<100K", "1M<n<10M"]
