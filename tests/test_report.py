"""`write_report` / `curate report`: one self-contained HTML page about a scored dataset (browser checks: test_report_browser.py)."""

from __future__ import annotations

import base64
import io
import json
import re
import time

import numpy as np
import pytest
from datasets import Dataset, DatasetDict, Image, List
from markupsafe import escape
from PIL import Image as PILImage
from report_data import INJECTED_PROMPT, png, scored_digits
from typer.testing import CliRunner

from difficulty_curation.audit import audit_hard_rows
from difficulty_curation.cli import app
from difficulty_curation.compare import STATES, compare_runs
from difficulty_curation.errors import ConfigError
from difficulty_curation.provenance import attach_provenance, read_provenance
from difficulty_curation.report import MAX_REPORT_BYTES, write_report
from difficulty_curation.stats import summarize


@pytest.fixture(scope="module")
def scored(digits) -> Dataset:
    """36 hand-scored digits: 6 easy, 12 medium (6 with a truncated rollout), 12 hard, 6 failed."""
    return scored_digits(digits, 36)


def render(dataset, tmp_path, **options) -> str:
    write_report(dataset, tmp_path / "report.html", overwrite=True, **options)
    return (tmp_path / "report.html").read_text(encoding="utf-8")


def page_counts(page: str) -> dict[str, int]:
    return {name: int(count) for name, count in re.findall(r'data-bucket="(\w+)">(\d+)<', page)}


def row_labels(page: str, bucket: str) -> list[str]:
    cards = re.findall(
        rf'<div class="card row" data-bucket="{bucket}">\s*<div class="meta"><span class="label">([^<]+)', page
    )
    return cards


def test_the_bucket_counts_on_the_page_are_the_datasets(scored, tmp_path):
    summary = summarize(scored)
    counts = page_counts(render(scored, tmp_path))
    assert counts == {**summary.buckets, "failed": summary.num_failed, "total": summary.num_rows}
    assert counts == {"easy": 6, "medium": 12, "hard": 12, "failed": 6, "total": 36}


def test_each_bucket_shows_a_seeded_sample_of_its_rows(scored, tmp_path):
    first = render(scored, tmp_path, rows_per_bucket=3, seed=1)
    again = render(scored, tmp_path, rows_per_bucket=3, seed=1)
    other = render(scored, tmp_path, rows_per_bucket=3, seed=2)
    assert first == again
    assert {bucket: len(row_labels(first, bucket)) for bucket in ("easy", "medium", "hard")} == dict.fromkeys(
        ("easy", "medium", "hard"), 3
    )
    assert [row_labels(first, b) for b in ("medium", "hard")] != [row_labels(other, b) for b in ("medium", "hard")]
    difficulties = scored["difficulty"]
    for label in row_labels(first, "hard"):
        assert difficulties[int(label.split()[-1])] == 1.0


def test_ten_thousand_rows_render_only_the_sampled_rows(digits, tmp_path):
    big = scored_digits(digits, 10_000)
    info = write_report(big, tmp_path / "big.html", rows_per_bucket=24)
    page = (tmp_path / "big.html").read_text(encoding="utf-8")
    assert info.sampled_rows == {"easy": 24, "medium": 24, "hard": 24}
    assert page.count('<div class="card row"') == 72
    assert page_counts(page)["total"] == 10_000
    assert info.size_bytes == (tmp_path / "big.html").stat().st_size < MAX_REPORT_BYTES
    assert page.count("<img ") == info.num_thumbnails <= 72 + 20 * 4


def test_a_script_in_a_prompt_is_shown_as_text_and_the_page_runs_no_script(scored, tmp_path):
    page = render(scored, tmp_path)
    assert INJECTED_PROMPT not in page
    assert str(escape(INJECTED_PROMPT)) in page
    assert "<script" not in page.lower()
    assert "default-src 'none'" in page  # and a Content-Security-Policy that would refuse one anyway


def test_secrets_in_rows_and_provenance_are_redacted(scored, tmp_path, monkeypatch):
    secret = "hf_reportTESTsecret_81f2c"
    monkeypatch.setenv("HF_TOKEN", secret)
    leaky = scored.map(
        lambda row, index: (
            {"rollouts": [f"{r} {secret}" for r in row["rollouts"]], "problem": f"{row['problem']} {secret}"}
            if index < 3
            else {}
        ),
        with_indices=True,
    )
    attach_provenance(leaky, {**read_provenance(scored), "api_base": f"http://user:{secret}@host/v1"})
    page = render(leaky, tmp_path)
    assert secret not in page
    assert "***" in page


def test_each_kept_rollout_shows_its_verdict_and_extracted_answer(scored, tmp_path):
    page = render(scored, tmp_path)
    columns = scored.select_columns(["rollouts", "rollout_scores", "rollout_finish_reasons"])
    truncated = sum(reasons.count("length") for reasons in columns["rollout_finish_reasons"])
    right = sum(score == 1.0 for scores in columns["rollout_scores"] for score in scores)
    total = sum(len(r) for r in columns["rollouts"])
    assert page.count('class="verdict truncated"') == truncated == 6
    assert page.count('class="verdict right"') == right
    assert page.count('class="verdict wrong"') == total - right - truncated
    assert page.count("· 1 truncated") == 6  # the num_truncated column, where present
    solution = scored[1]["solution"]  # a medium row: its tagged rollout is judged by the text inside the tags
    assert f"answer</span> <code>{solution}</code><pre>&lt;answer&gt;{solution}&lt;/answer&gt;</pre>" in page


def test_each_row_shows_its_difficulty_interval_where_present(scored, tmp_path):
    page = render(scored, tmp_path)
    assert page.count("(interval [") == 30
    assert "(interval [" not in render(scored.remove_columns(["pass_rate_low", "pass_rate_high"]), tmp_path)


def test_the_audit_clusters_are_the_audits_with_counts(scored, tmp_path):
    page = render(scored, tmp_path)
    table = page[page.index('<table id="audit-groups">') :]
    shown = re.findall(
        r"<tr><td><code>([^<]*)</code></td><td><code>([^<]*)</code></td>\s*<td class=\"n\">(\d+)</td>", table
    )
    expected = [(g.reference, g.majority_answer, str(g.count)) for g in audit_hard_rows(scored)]
    assert shown == expected and expected


def test_without_kept_rollouts_the_page_says_how_to_keep_them(scored, tmp_path):
    bare = scored.remove_columns(["rollouts", "rollout_scores", "rollout_finish_reasons"])
    page = render(bare, tmp_path)
    assert "--keep-rollouts" in page and 'class="verdict' not in page


def test_failed_rows_are_listed_with_their_reasons(scored, tmp_path):
    page = render(scored, tmp_path)
    failed = page[page.index('<table id="failed-rows">') :]
    rows = re.findall(r"<tr><td>(\d+)</td><td>([^<]+)</td></tr>", failed)
    assert [int(index) for index, _ in rows] == [i for i, d in enumerate(scored["difficulty"]) if d is None]
    assert {reason for _, reason in rows} == {"image: image cannot be decoded (not a recognised image format)"}


def test_a_text_only_dataset_gets_a_page_without_images(digits, tmp_path):
    text_only = scored_digits(digits, 12, image_column=None)
    page = render(text_only, tmp_path)
    assert "<img" not in page and page_counts(page)["total"] == 12
    assert page.count('<div class="card row"') == 10


def test_compare_shows_the_transition_matrix_of_compare_runs_and_the_rows_that_moved(scored, tmp_path):
    later = scored.map(lambda row: {"difficulty": None if row["difficulty"] is None else 1 - row["difficulty"]})
    attach_provenance(later, {**read_provenance(scored), "model": "tiny-vlm-trained"})
    page = render(scored, tmp_path, compare=later)
    expected = compare_runs([scored, later], top=12)
    table = page[
        page.index('<table id="transitions">') : page.index("</table>", page.index('<table id="transitions">'))
    ]
    matrix = {
        row: [int(n) for n in re.findall(r'<td class="n">(\d+)</td>', cells)]
        for row, cells in re.findall(r"<tr><th>(\w+)</th>(.*?)</tr>", table)
    }
    assert matrix == {a: [expected.transitions[a][b] for b in STATES] for a in STATES}
    assert page.count('<div class="card moved">') == len(expected.moved) > 0


def test_a_report_of_several_splits_shows_them_all(scored, tmp_path):
    both = DatasetDict(train=scored, test=scored.select(range(12)))
    page = render(both, tmp_path)
    assert page_counts(page)["total"] == 48
    assert "test row " in page and "train row " in page
    assert "<tr><td>test 4</td>" in page and "<tr><td>train 4</td>" in page  # failed rows name their split
    with pytest.raises(ConfigError, match="--split"):
        write_report(both, tmp_path / "x.html", compare=both)


def test_bad_options_are_config_errors(scored, tmp_path):
    with pytest.raises(ConfigError, match="rows_per_bucket"):
        write_report(scored, tmp_path / "x.html", rows_per_bucket=-1)
    with pytest.raises(ConfigError, match="thumbnail_size"):
        write_report(scored, tmp_path / "x.html", thumbnail_size=2)
    with pytest.raises(ConfigError, match="folder"):
        write_report(scored, tmp_path)
    with pytest.raises(ConfigError, match="no `difficulty` column"):
        write_report(scored.remove_columns("difficulty"), tmp_path / "x.html")


# -- odd images and hostile text -----------------------------------------------------------------------
def with_images(digits, cells: list, feature=None) -> Dataset:
    """`scored_digits(digits, 6)` (rows 0-3 and 5 scored, row 4 failed) with `cells` as its image column."""
    base = scored_digits(digits, len(cells))
    dataset = base.remove_columns("image").add_column("image", cells, feature=feature or List(Image()))
    return attach_provenance(dataset, read_provenance(base))


def placeholders(page: str) -> list[str]:
    return re.findall(r'<span class="missing">([^<]*)</span>', page)


def thumbnail_pixels(page: str) -> list[PILImage.Image]:
    return [
        PILImage.open(io.BytesIO(base64.b64decode(data))).convert("RGB")
        for data in re.findall(r'<img class="\w+" src="data:image/\w+;base64,([^"]+)" alt="image', page)
    ]


def test_a_row_with_more_than_four_images_shows_four_and_says_how_many_more(digits, tmp_path):
    image = {"bytes": png(digits[0]["image"]), "path": None}
    page = render(with_images(digits, [[image] * 7] + [[image]] * 5), tmp_path, rows_per_bucket=1)
    card = page[page.index('<span class="label">row 0</span>') :]
    card = card[: card.index('<div class="card')]
    assert card.count("<img ") == 4
    assert placeholders(card) == ["+3 more images (7 in all)"]


@pytest.mark.parametrize(
    ("cell", "reason"),
    [
        (None, "no image (None)"),
        ([None], "no image (None)"),
        ({"bytes": b"not an image", "path": None}, "image: image cannot be decoded (not a recognised image format)"),
        ([{"bytes": png(PILImage.new("RGB", (64, 64), "red"))[:-40], "path": None}], "image file is truncated"),
    ],
    ids=["none", "none-in-a-list", "undecodable", "truncated-png"],
)
def test_a_missing_or_undecodable_image_shows_a_placeholder_saying_why(digits, tmp_path, cell, reason):
    single = not isinstance(cell, list)
    cells = [cell] * 6
    page = render(with_images(digits, cells, Image() if single else None), tmp_path)
    shown = placeholders(page)
    assert len(shown) == 5 + 1 and all(reason in text for text in shown), shown  # 5 scored rows, 1 audit example
    assert "<img " not in page


def test_a_16_bit_image_is_shown_mid_gray_not_white(digits, tmp_path):
    sixteen_bit = PILImage.fromarray(np.full((8, 8), 32768, dtype=np.uint16))
    page = render(with_images(digits, [[{"bytes": png(sixteen_bit), "path": None}]] * 6), tmp_path)
    thumbnails = thumbnail_pixels(page)
    assert len(thumbnails) == 5 and {thumb.getpixel((0, 0)) for thumb in thumbnails} == {(128, 128, 128)}


def test_one_pixel_and_long_thin_images_get_thumbnails_that_fit_the_card(digits, tmp_path):
    cells = [[{"bytes": png(PILImage.new("RGB", size, "blue")), "path": None}] for size in [(1, 1), (5000, 20)] * 3]
    page = render(with_images(digits, cells), tmp_path)
    assert sorted(re.findall(r'alt="image \((\d+x\d+)\)"', page)) == ["1x1"] * 2 + ["5000x20"] * 3
    assert {thumb.size for thumb in thumbnail_pixels(page)} == {(1, 1), (128, 1)}
    assert "max-width: 100%; object-fit: contain" in page  # a 128x1 thumbnail is not drawn 12,288 px wide


#: Text a model or a dataset may hold: markup, brackets, and characters HTML may not hold.
HOSTILE = "[/INST] [b]3[/b] <b>4</b>\x00nul\x01\x1b[31mred\x7f\x85\ufffe\tend\r\nnext"


def test_control_characters_in_any_text_are_shown_as_visible_stand_ins(scored, tmp_path):
    hostile = scored.map(
        lambda row: {
            "problem": f"{row['problem']} {HOSTILE}",
            "solution": f"{row['solution']}{HOSTILE}",
            "rollouts": [f"{text} {HOSTILE}" for text in row["rollouts"]],
        }
    )
    attach_provenance(hostile, {**read_provenance(scored), "system_prompt": HOSTILE})
    page = render(hostile, tmp_path, title=f"run {HOSTILE}")
    forbidden = [c for c in page if (ord(c) < 0x20 and c not in "\t\n") or 0x7F <= ord(c) < 0xA0 or c == "\ufffe"]
    assert forbidden == []
    shown = "[/INST] [b]3[/b] &lt;b&gt;4&lt;/b&gt;␀nul␁␛[31mred␡\ufffd\ufffd\tend\nnext"
    assert page.count(shown) >= 1 + 5 + 4 * 30  # the title, the settings, each shown prompt and rollout


def test_a_300k_character_field_is_clipped_and_says_how_many_more(scored, tmp_path):
    long = "x" * 300_000
    hostile = scored.map(
        lambda row: {
            "problem": long,
            "solution": long,
            "rollouts": [long] * len(row["rollouts"]),
            "difficulty_error": long if row["difficulty_error"] else "",
        }
    )
    attach_provenance(hostile, {**read_provenance(scored), "system_prompt": long})
    info = write_report(hostile, tmp_path / "report.html")
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert info.size_bytes < 1_000_000 and "x" * 3_001 not in page
    for shown in (3_000, 1_500, 1_000, 200):  # prompts, rollouts, references and reasons, answers
        assert f"{'x' * shown}… ({300_000 - shown} more characters)" in page, shown


def test_a_megabyte_long_reference_renders_in_seconds(scored, tmp_path):
    long = "a" * 1_000_000  # one unbroken word: what made redaction quadratic
    started = time.perf_counter()
    render(scored.map(lambda row: {"solution": long, "problem": long}), tmp_path)
    assert time.perf_counter() - started < 30


def test_an_empty_dataset_gets_a_page_with_empty_buckets(scored, tmp_path):
    page = render(scored.select([]), tmp_path)
    assert page_counts(page) == {"easy": 0, "medium": 0, "hard": 0, "failed": 0, "total": 0}
    assert page.count("No rows in this bucket.") == 3 and "Every row was scored." in page


def test_a_one_row_dataset_gets_a_page_with_that_row(scored, tmp_path):
    page = render(scored.select([1]), tmp_path)
    assert page_counts(page) == {"easy": 0, "medium": 1, "hard": 0, "failed": 0, "total": 1}
    assert row_labels(page, "medium") == ["row 0"] and page.count("No rows in this bucket.") == 2


# -- the command ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scored_dir(scored, tmp_path_factory):
    folder = tmp_path_factory.mktemp("report") / "scored"
    scored.save_to_disk(str(folder))
    return folder


def test_curate_report_writes_the_page_and_reports_its_size(scored_dir, tmp_path):
    result = CliRunner().invoke(app, ["report", str(scored_dir), "--out", str(tmp_path / "r.html"), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["size_bytes"] == (tmp_path / "r.html").stat().st_size and info["num_rows"] == 36
    result = CliRunner().invoke(app, ["report", str(scored_dir), "--out", str(tmp_path / "r.html"), "--overwrite"])
    assert result.exit_code == 0 and re.search(r"report: .*r\.html \(0\.\d\d MB; 36 rows", result.stdout)


def test_curate_report_help_has_an_example_and_every_option():
    help_text = CliRunner().invoke(app, ["report", "--help"]).output
    assert "Example:" in help_text
    for option in ("--out", "--compare", "--rows-per-bucket", "--seed", "--split", "--thumbnail-size", "--json"):
        assert option in help_text, option


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rows-per-bucket", "-1"], "rows_per_bucket must be an integer >= 0"),
        (["--split", "nope"], "split 'nope' is not in"),
        (["--compare", "./does-not-exist"], "does not exist"),
    ],
)
def test_bad_report_arguments_are_one_line_errors(scored_dir, tmp_path, args, message):
    result = CliRunner().invoke(app, ["report", str(scored_dir), "--out", str(tmp_path / "r.html"), *args])
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


# -- real runs ----------------------------------------------------------------------------------------
def test_the_report_of_the_demo_models_run_folder(demo_run, trained_vlm, tmp_path):
    from datasets import load_from_disk

    result = CliRunner().invoke(app, ["report", str(demo_run), "--out", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    summary = summarize(load_from_disk(str(demo_run)))
    assert page_counts(page) == {**summary.buckets, "failed": summary.num_failed, "total": 24}
    assert page.count('class="verdict ') == 4 * summary.num_scored
    assert page.count("<img ") >= summary.num_scored and str(trained_vlm) in page


def test_the_report_of_a_text_only_run(tiny_lm, tmp_path):
    from difficulty_curation.runners.run_folder import score_to_dir
    from difficulty_curation.scoring import score_difficulty

    rows = Dataset.from_dict({"problem": ["1+1?", "2+2?", "<b>3+3?</b>"], "solution": ["2", "4", "6"]})
    scorer = score_difficulty(str(tiny_lm), image_column=None, num_rollouts=2, max_new_tokens=3, keep_rollouts=True)
    score_to_dir(rows, scorer, tmp_path / "run", batch_size=3, progress=False)
    result = CliRunner().invoke(app, ["report", str(tmp_path / "run"), "--out", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert page_counts(page)["total"] == 3 and "<img" not in page and "&lt;b&gt;3+3?&lt;/b&gt;" in page
