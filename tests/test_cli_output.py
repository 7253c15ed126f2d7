"""What the CLI prints: data shown as written (never read as Rich markup), and every mistake as one `Error:` line."""

import pytest
from datasets import Dataset
from typer.testing import CliRunner

from difficulty_curation.cli import app
from difficulty_curation.compare import merge_scores
from difficulty_curation.config import ScoringConfig
from difficulty_curation.demo import digits_dataset
from difficulty_curation.errors import ConfigError
from difficulty_curation.provenance import attach_provenance, provenance_record

runner = CliRunner()
#: Values Rich would read as markup: a closing tag with nothing open (a traceback), or a tag (silently dropped).
HOSTILE = ["[/INST] 3", "ckpt[/]", "[b]bold[/b]", "[x]"]


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "250"})


def _scored_run(path, difficulties):
    """Rows whose references, wrong answers and failure reasons are the hostile strings, saved at `path`."""
    rows = []
    for index, difficulty in enumerate(difficulties):
        reference, answer = HOSTILE[index % 4], HOSTILE[(index + 1) % 4]
        rows.append(
            {
                "problem": f"question {index}",
                "solution": reference,
                "difficulty": difficulty,
                "num_correct": None if difficulty is None else round(4 * (1 - difficulty)),
                "num_rollouts": 4,
                "difficulty_error": None if difficulty is not None else f"problem: {reference} is not a question",
                "rollouts": [answer] * 4,
                "rollout_scores": [0.0] * 4,
            }
        )
    config = ScoringConfig(model="tiny", keep_rollouts=True, image_column=None)
    attach_provenance(Dataset.from_list(rows), provenance_record(config, source="hostile")).save_to_disk(str(path))
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two runs of the same 16 rows: `a` finds rows 0-7 hard, `b` easy; rows 12-15 failed in both."""
    root = tmp_path_factory.mktemp("hostile")
    first = _scored_run(root / "a", [1.0] * 8 + [0.5] * 4 + [None] * 4)
    second = _scored_run(root / "b", [0.0] * 8 + [0.5] * 4 + [None] * 4)
    merged = root / "merged"
    merge_scores([str(first), str(second)], names=["ckpt[/]", "[b]bold[/b]"]).save_to_disk(str(merged))
    return {"a": first, "b": second, "merged": merged, "root": root}


def _shown_as_written(result, values=HOSTILE):
    assert result.exit_code == 0, result.output
    for value in values:
        assert value in result.stdout, value


def test_stats_shows_failure_reasons_with_brackets_as_written(runs):
    _shown_as_written(invoke("stats", runs["a"]))


def test_audit_shows_references_and_answers_with_brackets_as_written(runs):
    # audit shows answers as the verifier compares them (lower case)
    _shown_as_written(invoke("audit", runs["a"]), [value.lower() for value in HOSTILE])


def test_compare_shows_run_names_and_references_with_brackets_as_written(runs):
    _shown_as_written(invoke("compare", runs["a"], runs["b"], "--name", "ckpt[/]", "--name", "[b]bold[/b]"))


def test_merge_scores_shows_model_names_and_failure_reasons_with_brackets_as_written(runs, tmp_path):
    _shown_as_written(
        invoke("merge-scores", runs["a"], runs["b"], "--name", "[x]", "--name", "[/INST] 3", "--out", tmp_path / "m")
    )


def test_filter_of_merged_scores_shows_model_names_with_brackets_as_written(runs, tmp_path):
    result = invoke("filter", runs["merged"], "--model", "ckpt[/]", "--bucket", "hard", "--out", tmp_path / "f")
    _shown_as_written(result, ["ckpt[/]", "[b]bold[/b]"])


@pytest.mark.parametrize(
    "command",
    [
        ["stratify", "--out", "OUT"],
        ["stratify", "--model", "ckpt[/]", "--out", "OUT"],
        ["mix", "--ratio", "easy=0.5,medium=0.5", "--rows", "4", "--model", "[b]bold[/b]", "--out", "OUT"],
    ],
)
def test_stratify_and_mix_summarise_merged_scores_with_bracketed_names(runs, tmp_path, command):
    name, *options = command
    result = invoke(name, runs["merged"], *(str(tmp_path / "o") if o == "OUT" else o for o in options))
    assert result.exit_code == 0, result.output
    assert "Saved to" in result.stdout


def test_control_characters_in_printed_values_are_shown_as_escapes(runs, tmp_path):
    run = tmp_path / "ansi"
    rows = Dataset.load_from_disk(str(runs["a"])).map(
        lambda row: {"difficulty_error": row["difficulty_error"] and "\x1b[31mred\x07\r\nline"}
    )
    rows.save_to_disk(str(run))
    result = invoke("stats", run)
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    assert "\\x1b[31mred\\x07\\r\\nline" in result.stdout


def test_a_long_value_in_a_table_is_cut_in_the_middle_saying_how_much(runs, tmp_path):
    long_name = "n" * 100_000
    result = invoke("merge-scores", runs["a"], runs["b"], "--name", long_name, "--name", "y", "--out", tmp_path / "m")
    assert result.exit_code == 0, result.output
    assert "characters cut]" in result.stdout and long_name not in result.stdout


def _one_error_line(result, *expected: str) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("Error: ")
    for text in expected:
        assert text in line, line
    return line


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["demo", "--rows", "ten"], ["'--rows'", "curate demo --help"]),
        (["demo", "--bogus"], ["--bogus", "curate demo --help"]),
        (["scroe", "x"], ["'scroe'", "'score'", "curate --help"]),
        (["score"], ["'source'", "curate score --help"]),
        (["filter", "scored/"], ["'--out'", "curate filter --help"]),
        (["compare", "a/", "b/", "--top", "1.5"], ["'--top'", "curate compare --help"]),
        (["audit", "scored/", "--limit", "-1"], ["'--limit'", "curate audit --help"]),
    ],
)
def test_a_usage_mistake_is_one_error_line_naming_the_option_and_where_to_read_more(args, expected):
    _one_error_line(runner.invoke(app, args), *expected)


def test_help_still_shows_the_commands_and_their_options():
    assert runner.invoke(app, []).exit_code == 2  # bare `curate`: the help, as before
    result = runner.invoke(app, ["demo", "--help"])
    assert result.exit_code == 0 and "--rows" in result.output and "Example:" in result.output


@pytest.mark.parametrize("rows", [-1, 0])
def test_demo_rows_below_one_is_one_error_line_before_any_model_is_built(rows):
    _one_error_line(runner.invoke(app, ["demo", "--rows", str(rows)]), "--rows", f"got {rows}")


@pytest.mark.parametrize("rows", [-1, 0])
def test_the_demo_digits_refuse_a_number_of_rows_below_one(rows):
    with pytest.raises(ConfigError, match="num_rows"):
        digits_dataset(num_rows=rows)


def test_a_hostile_value_in_an_error_is_one_short_line_without_control_characters(runs):
    line = _one_error_line(invoke("stats", runs["a"], "--split", "\x1b[2J" + "s[b]" * 75_000), "characters cut]")
    assert "\x1b" not in line and "\\x1b[2J" in line and len(line) < 2_200


def test_a_path_longer_than_the_file_system_allows_is_one_error_line():
    _one_error_line(runner.invoke(app, ["stats", "a" * 300]), "longer than the file system allows")


def test_compare_cuts_a_very_long_run_name_in_its_summary_lines(runs):
    long_name = "n" * 5000
    result = invoke("compare", runs["a"], runs["b"], "--name", long_name, "--name", "b")
    assert result.exit_code == 0, result.output
    assert long_name not in result.output and "characters cut]" in result.output
