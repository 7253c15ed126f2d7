"""`compare` matches rows by their values and says plainly when no row was scored. Runs written by hand: no model."""

from typer.testing import CliRunner

from difficulty_curation.cli import app
from difficulty_curation.compare import compare_runs
from tests.merged_data import scored_run

runner = CliRunner()


def test_the_same_rows_scored_under_renamed_columns_match_by_their_values():
    first = scored_run([0.0, 1.0, 0.5])
    renamed = scored_run([1.0, 1.0, 0.5], model="n", prompt_column="question", answer_column="answer")
    comparison = compare_runs([first, renamed])
    assert comparison.matched == 3 and comparison.transitions["easy"]["hard"] == 1


def test_runs_where_every_row_failed_say_no_scored_rows(tmp_path):
    paths = []
    for number, run in enumerate([scored_run([None, None]), scored_run([None, 0.5], model="n")]):
        run.save_to_disk(str(tmp_path / f"run{number}"))
        paths.append(str(tmp_path / f"run{number}"))
    result = runner.invoke(app, ["compare", *paths], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "no scored rows" in result.output and "None" not in result.output
