"""`curate demo` ends with the next commands to try, and those commands run on what it saved."""

from __future__ import annotations

import shlex

from test_docs import ROOT, command_problems
from typer.testing import CliRunner

from difficulty_curation.cli import app
from difficulty_curation.demo import next_commands

runner = CliRunner()


def _commands(text: str) -> list[list[str]]:
    """The arguments after `curate` of each suggested command line."""
    lines = [shlex.split(line, comments=True) for line in text.splitlines()[1:]]
    assert all(words[0] == "curate" for words in lines)
    return [words[1:] for words in lines]


def test_the_next_commands_are_real_commands_with_real_options():
    for saved_to in (None, "my runs/digits"):
        suggestions = _commands(next_commands(saved_to))
        assert [arguments[0] for arguments in suggestions][-5:] == ["report", "filter", "export", "plan", "score"]
        assert [problem for arguments in suggestions for problem in command_problems(arguments)] == []


def test_the_next_commands_name_the_folder_the_demo_saved_or_ask_for_one():
    assert _commands(next_commands())[0] == ["demo", "--out", "demo-scored"]
    suggestions = _commands(next_commands("my runs/digits"))
    assert all(arguments[1] == "my runs/digits" for arguments in suggestions[:3])
    assert "demo" not in [arguments[0] for arguments in suggestions]


def test_the_readme_shows_the_demo_output_ending_as_the_demo_ends_it():
    assert next_commands() in (ROOT / "README.md").read_text()


def test_the_demo_ends_with_the_next_commands_and_they_run_on_its_output(trained_vlm, tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFICULTY_CURATION_CACHE", str(trained_vlm.parent))  # the demo model, already built
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["demo", "--rows", "24", "--quiet", "--out", "digits"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.output.rstrip("\n").endswith(next_commands("digits"))
    for arguments in _commands(next_commands("digits"))[:3]:  # report, filter, export: not the user's own data
        step = runner.invoke(app, arguments, catch_exceptions=False)
        assert step.exit_code == 0, (arguments, step.output)
    assert (tmp_path / "report.html").is_file()
    assert (tmp_path / "sft-m-trl" / "train.parquet").is_file()


def test_the_demo_without_out_suggests_saving_first_and_json_output_stays_json(trained_vlm, monkeypatch):
    monkeypatch.setenv("DIFFICULTY_CURATION_CACHE", str(trained_vlm.parent))
    result = runner.invoke(app, ["demo", "--rows", "4", "--quiet"], catch_exceptions=False)
    assert result.exit_code == 0 and result.output.rstrip("\n").endswith(next_commands())
    as_json = runner.invoke(app, ["demo", "--rows", "4", "--quiet", "--json"], catch_exceptions=False)
    assert as_json.exit_code == 0 and "Next, try" not in as_json.output
