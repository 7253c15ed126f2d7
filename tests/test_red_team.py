"""What a hostile user's last pass found after #30: each test pins one defect, with tiny hand-scored data."""

import re

import pytest
from helpers import curate, refused
from merged_data import scored_run

from difficulty_curation.cards import render_card, write_card
from difficulty_curation.compare import merge_scores
from difficulty_curation.errors import ConfigError
from difficulty_curation.sources import load_source, save_dataset


def files(folder):
    """Every file under `folder` with its bytes."""
    return {path: path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture
def two_datasets(tmp_path):
    """Two saved scored datasets: one to report on, another one that must stay untouched."""
    source, other = tmp_path / "source", tmp_path / "other"
    save_dataset(scored_run([0.0, 0.5, 1.0]), source)
    save_dataset(scored_run([0.25, 0.75], model="other"), other)
    return source, other


def test_report_with_overwrite_never_writes_its_html_over_another_datasets_state_file(two_datasets):
    source, other = two_datasets
    before = files(other)
    result = curate("report", source, "--out", other / "state.json", "--overwrite")
    assert refused(result, "end it with one of .html, .htm"), result.output
    assert files(other) == before
    assert len(load_source(other)) == 2


def test_report_still_writes_an_html_page_anywhere_else(two_datasets, tmp_path):
    source, _ = two_datasets
    assert curate("report", source, "--out", tmp_path / "page.html").exit_code == 0
    assert (tmp_path / "page.html").read_text().startswith("<!")


def test_card_refuses_an_out_that_is_its_own_histograms_path(two_datasets, tmp_path):
    source, _ = two_datasets
    out = tmp_path / "card" / "difficulty_histogram.png"
    result = curate("card", source, "--out", out)
    assert refused(result, "where the card's histogram goes"), result.output
    assert not out.exists()


def test_write_card_refuses_an_out_that_is_its_own_histograms_path(tmp_path):
    with pytest.raises(ConfigError, match="histogram"):
        write_card(scored_run([0.5]), tmp_path / "difficulty_histogram.png", "me/x")
    assert not (tmp_path / "difficulty_histogram.png").exists()


def table_rows(markdown, first_cell):
    """The cells of every table row of `markdown` starting with `first_cell`, split on unescaped `|`."""
    rows = [line for line in markdown.splitlines() if line.startswith(f"| {first_cell}")]
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", row)[1:-1]] for row in rows]


def test_the_cards_provenance_table_keeps_a_multi_line_system_prompt_and_a_regex_with_a_bar_in_one_cell():
    scored = scored_run(
        [0.0, 1.0], answer_pattern=r"Answer: (\d+|none)", system_prompt="Be brief.\nThink | then answer."
    )
    card = str(render_card(scored, "me/x"))
    assert table_rows(card, "answer_pattern") == [["answer_pattern", r"`Answer: (\d+\|none)`"]]
    assert table_rows(card, "system_prompt") == [["system_prompt", r"`Be brief. Think \| then answer.`"]]
    assert "\nThink" not in card


def test_the_cards_tables_keep_run_names_with_bars_and_backticks_in_their_cells(tmp_path):
    merged = merge_scores([scored_run([0.0, 0.5], model="a"), scored_run([0.5, 1.0], model="b")], names=["x|y", "b`z"])
    card = str(render_card(merged, "me/x"))
    assert table_rows(card, "x") == [[r"x\|y \ b`z", "easy", "medium", "hard", "failed"]]
    assert table_rows(card, "model |") == [["model", r"``mean of x\|y, b`z``"]]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--prompt-column", "question"], "prompt_column='question' is not a column"),
        (["--batch-size", "0"], "batch_size must be an integer >= 1"),
        (["--out", "{other}"], "already holds files that are not a scoring run"),
        (["--out", "{other}/state.json"], "is a file; pass a folder path"),
    ],
)
def test_plan_refuses_a_bad_column_batch_size_or_out_before_it_loads_the_model(
    empty_model, two_datasets, options, message
):
    source, other = two_datasets
    options = [option.format(other=other) for option in options]
    before = files(other)
    result = curate("plan", source, "--model", empty_model, "--pilot", "2", "--image-column", "none", *options)
    assert refused(result, message), result.output
    assert files(other) == before


def test_mix_of_a_dataset_whose_rows_all_failed_says_so_rather_than_ask_for_at_most_0_rows(tmp_path):
    source = tmp_path / "failed"
    save_dataset(scored_run([None, None]), source)
    result = curate("mix", source, "--ratio", "hard=1", "--rows", "1", "--out", tmp_path / "mixed")
    assert refused(result, "no scored rows to draw from (2 rows, every one failed to score)"), result.output
    assert "at most 0" not in result.output


def test_the_report_shows_a_bidi_override_in_a_prompt_as_a_stand_in_not_reordered_text(tmp_path):
    source = tmp_path / "scored"
    save_dataset(scored_run([0.0, 0.5, 1.0], problems=["Is it 7\u202e12?", "ok \u2067x\u2069", "plain"]), source)
    assert curate("report", source, "--out", tmp_path / "page.html").exit_code == 0
    page = (tmp_path / "page.html").read_text(encoding="utf-8")
    assert "Is it 7\ufffd12?" in page
    assert not any(chr(code) in page for code in (*range(0x202A, 0x202F), *range(0x2066, 0x206A)))


@pytest.mark.parametrize(
    "command",
    [
        ["stratify", "{source}", "--out", "{out}"],
        ["filter", "{source}", "--bucket", "medium", "--out", "{out}"],
        ["export", "{source}", "--format", "swift", "--out", "{out}"],
    ],
)
def test_a_command_leaves_no_cache_file_in_the_folder_it_reads(tmp_path, command):
    import datasets

    source = tmp_path / "source"
    save_dataset(scored_run([0.0, 0.5, 1.0]), source)
    before = files(source)
    result = curate(*(part.format(source=source, out=tmp_path / "out") for part in command))
    assert result.exit_code == 0, result.output
    assert files(source) == before
    assert datasets.is_caching_enabled()  # the switch is the command's alone


def test_export_of_an_empty_split_says_it_has_no_rows_not_that_every_row_failed(tmp_path):
    source = tmp_path / "empty"
    save_dataset(scored_run([0.5]).select([]), source)
    result = curate("export", source, "--format", "verl", "--out", tmp_path / "out")
    assert refused(result, "the dataset has none at all (splits: train 0 rows)"), result.output
    assert "failed" not in result.output


def test_plan_refuses_a_run_folder_inside_its_source_before_it_loads_the_model(empty_model, two_datasets):
    source, _ = two_datasets
    before = files(source)
    result = curate(
        "plan", source, "--model", empty_model, "--pilot", "2", "--image-column", "none", "--out", source / "pilot"
    )
    assert refused(result, "which this command reads"), result.output
    assert files(source) == before and not (source / "pilot").exists()


def python_blocks(card: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", card, flags=re.S)


def test_a_merged_cards_training_snippet_names_no_mean_as_a_model_and_parses():
    merged = merge_scores([scored_run([0.0, 0.5], model="a"), scored_run([0.5, 1.0], model="b")], names=["a", "b"])
    (snippet,) = [block for block in python_blocks(str(render_card(merged, "me/x"))) if "SFTTrainer(" in block]
    compile(snippet, "card", "exec")
    assert "mean of" not in snippet and 'model="your-org/your-model"' in snippet


def test_a_model_name_with_a_quote_leaves_the_cards_training_snippet_valid_python():
    scored = scored_run([0.0, 0.5], model='org/odd"name\\')
    (snippet,) = [block for block in python_blocks(str(render_card(scored, "me/x"))) if "SFTTrainer(" in block]
    compile(snippet, "card", "exec")
    assert 'org/odd\\"name' in snippet
