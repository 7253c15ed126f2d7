"""README.md and docs/*.md are true where they show commands, code and links.

Every `curate ...` command in a code block or inline code names a real subcommand and only options
that subcommand has (read from the Typer app itself); every `make X` names a Makefile target; the
Python examples import public names and pass only keywords those functions take; every relative
link points to a file (and heading) that exists.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer.main

import difficulty_curation
from difficulty_curation.cli import app

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```[^\n]*$", re.M | re.S)
INLINE = re.compile(r"(?<!`)`([^`\n]+(?:\n[^`\n]+)*)`(?!`)")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
SHELL_LANGUAGES = {"", "bash", "sh", "shell", "console", "text"}
#: Options of the `curate` group itself, given before the subcommand (`curate --verbose push ...`).
GROUP_OPTIONS = {"--verbose", "-v", "--help"}


def _options() -> dict[str, set[str]]:
    """Every subcommand of `curate` and the option names it accepts, from the Typer app."""
    group = typer.main.get_command(app)
    return {
        name: {"--help", *(option for param in command.params for option in (*param.opts, *param.secondary_opts))}
        for name, command in group.commands.items()
    }


OPTIONS = _options()


def _relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _without_fences(text: str) -> str:
    """The page with its fenced code blocks blanked out (line numbers kept)."""
    return FENCE.sub(lambda match: "\n" * match.group(0).count("\n"), text)


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def shell_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, command line) for every line of the page's shell blocks and inline code spans."""
    for match in FENCE.finditer(text):
        if match.group(1) not in SHELL_LANGUAGES:
            continue
        first = _line_of(text, match.start(2))
        pending = ""
        for number, line in enumerate(match.group(2).splitlines(), start=first):
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            yield number, pending + line
            pending = ""
    prose = _without_fences(text)
    for match in INLINE.finditer(prose):
        yield _line_of(prose, match.start()), " ".join(match.group(1).split())


def curate_invocations(line: str) -> Iterator[list[str]]:
    """The arguments after `curate` of each invocation on a shell line (`$ `, VAR=value, && and ; allowed)."""
    line = line.strip().removeprefix("$ ")
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError:  # an unbalanced quote in prose: not a command
        return
    segment: list[str] = []
    for token in [*tokens, "&&"]:
        if token in ("&&", ";", "||"):
            while segment and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", segment[0]):
                segment.pop(0)
            if segment and (segment[0] == "curate" or segment[0].endswith("/curate")):
                yield segment[1:]
            segment = []
        else:
            segment.append(token)


def command_problems(arguments: list[str]) -> list[str]:
    """What is wrong with `curate ARGUMENTS`: an unknown subcommand, or options that subcommand lacks."""
    arguments = list(arguments)
    while arguments and arguments[0] in GROUP_OPTIONS:
        arguments.pop(0)
    if not arguments or arguments[0] in ("...", "--help"):
        return []
    name, rest = arguments[0], arguments[1:]
    if name not in OPTIONS:
        return [f"`curate {name}` is not a command (commands: {', '.join(sorted(OPTIONS))})"]
    problems = []
    for token in rest:
        option = token.strip("[](),|").split("=", 1)[0]
        if re.fullmatch(r"--[a-z][a-z0-9-]*|-[a-zA-Z]", option) and option not in OPTIONS[name]:
            problems.append(f"`curate {name}` has no option {option}")
    return problems


def curate_problems(page: Path) -> tuple[int, list[str]]:
    """(invocations found, problems as 'page:line: what') for every `curate` command on the page."""
    found, problems = 0, []
    for number, line in shell_lines(page.read_text()):
        for arguments in curate_invocations(line):
            found += 1
            problems += [f"{_relative(page)}:{number}: {problem}" for problem in command_problems(arguments)]
    return found, problems


@pytest.mark.parametrize("page", PAGES, ids=_relative)
def test_every_curate_command_on_the_page_uses_a_real_subcommand_and_its_own_options(page):
    _, problems = curate_problems(page)
    assert problems == []


def test_the_checker_finds_the_commands_and_would_catch_a_wrong_one():
    found, _ = curate_problems(ROOT / "README.md")
    assert found >= 15
    assert command_problems(["score", "data/", "--model", "m", "--rollouts", "8"]) == [
        "`curate score` has no option --rollouts"
    ]
    assert command_problems(["scores", "data/"])[0].startswith("`curate scores` is not a command")
    assert command_problems(["--verbose", "push", "scored/", "me/x", "[--private]", "--license=mit"]) == []
    assert list(curate_invocations("$ OPENAI_API_KEY=k curate stats x/ --json  # a comment --nope")) == [
        ["stats", "x/", "--json"]
    ]


def test_every_curate_command_is_shown_somewhere_in_the_readme_or_the_docs():
    shown = set()
    for page in PAGES:
        for _, line in shell_lines(page.read_text()):
            shown |= {arguments[0] for arguments in curate_invocations(line) if arguments}
    assert set(OPTIONS) - shown == set()


# -- make targets --------------------------------------------------------------------------------


def _make_targets() -> set[str]:
    makefile = (ROOT / "Makefile").read_text()
    return {match.group(1) for match in re.finditer(r"^([\w.-]+):(?!=)", makefile, re.M)}


@pytest.mark.parametrize("page", PAGES, ids=_relative)
def test_every_make_command_on_the_page_is_a_makefile_target(page):
    targets = _make_targets()
    missing = []
    for number, line in shell_lines(page.read_text()):
        words = line.strip().removeprefix("$ ").split()
        if len(words) >= 2 and words[0] == "make" and words[1] not in targets:
            missing.append(f"{_relative(page)}:{number}: make {words[1]}")
    assert missing == []


def test_the_readme_shows_the_two_setup_commands():
    lines = {line.split("#")[0].strip() for _, line in shell_lines((ROOT / "README.md").read_text())}
    assert {"make demo", "make test"} <= lines
    assert {"demo", "test", "install"} <= _make_targets()


# -- Python examples ------------------------------------------------------------------------------


def _public(name: str) -> object:
    return getattr(difficulty_curation, name)


def _call_problems(call: ast.Call, functions: dict[str, object]) -> list[str]:
    """Keywords (and too many positional arguments) that the called public function does not take."""
    func = call.func
    if isinstance(func, ast.Name) and func.id in functions:
        name, target = func.id, functions[func.id]
    elif (
        isinstance(func, ast.Attribute)
        and isinstance(func.value, ast.Name)
        and func.value.id == "difficulty_curation"
        and func.attr in difficulty_curation.__all__
    ):
        name, target = f"difficulty_curation.{func.attr}", _public(func.attr)
    else:
        return []
    if not callable(target):
        return []
    parameters = inspect.signature(target).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return []
    names = {p.name for p in parameters if p.kind is not p.VAR_POSITIONAL}
    problems = [f"{name}() takes no keyword {kw.arg}=" for kw in call.keywords if kw.arg and kw.arg not in names]
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    # `*args` or a `...` placeholder (`f(ds, scorer, ...)`: and so on) stand for any number of arguments
    starred = any(
        isinstance(arg, ast.Starred) or (isinstance(arg, ast.Constant) and arg.value is ...) for arg in call.args
    )
    if not starred and not any(p.kind is p.VAR_POSITIONAL for p in parameters) and len(call.args) > len(positional):
        problems.append(
            f"{name}() takes at most {len(positional)} positional arguments, the page passes {len(call.args)}"
        )
    return problems


def python_problems(source: str) -> list[str]:
    """Imports of names the package does not have, and calls that pass keywords the function lacks."""
    tree = ast.parse(source)
    functions: dict[str, object] = {}
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "difficulty_curation":
            module = importlib.import_module(node.module)
            for alias in node.names:
                public = node.module != "difficulty_curation" or alias.name in difficulty_curation.__all__
                if not public or not hasattr(module, alias.name):
                    problems.append(f"from {node.module} import {alias.name}: no such public name")
                else:
                    functions[alias.asname or alias.name] = getattr(module, alias.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            problems += _call_problems(node, functions)
    return problems


def python_snippets(text: str) -> Iterator[tuple[int, str, bool]]:
    """(line, source, whole block?) for python blocks, and for inline calls of public functions."""
    for match in FENCE.finditer(text):
        if match.group(1) == "python":
            yield _line_of(text, match.start(2)), match.group(2), True
    prose = _without_fences(text)
    for match in INLINE.finditer(prose):
        span = " ".join(match.group(1).split())
        called = re.match(r"(?:difficulty_curation\.)?(\w+)\(", span)
        if called and called.group(1) in difficulty_curation.__all__:
            yield _line_of(prose, match.start()), span, False


@pytest.mark.parametrize("page", PAGES, ids=_relative)
def test_python_examples_on_the_page_use_the_public_api_as_it_is(page):
    every_public_name = {name: _public(name) for name in difficulty_curation.__all__}
    problems = []
    for number, source, whole_block in python_snippets(page.read_text()):
        if whole_block:  # a whole block must be Python, with its own imports
            try:
                found = python_problems(source)
            except SyntaxError:
                found = ["not valid Python"]
        else:  # an inline call of a public function; a sketch that is not Python (`a | b=...`) is skipped
            try:
                calls = [node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Call)]
            except SyntaxError:
                continue
            found = [problem for call in calls for problem in _call_problems(call, every_public_name)]
        problems += [f"{_relative(page)}:{number}: {problem}" for problem in found]
    assert problems == []


def test_the_python_checker_would_catch_a_renamed_keyword_or_a_private_import():
    assert python_problems("from difficulty_curation import score_difficulty\nscore_difficulty('m', rollouts=8)") == [
        "score_difficulty() takes no keyword rollouts="
    ]
    assert python_problems("from difficulty_curation import _EXPORTS") == [
        "from difficulty_curation import _EXPORTS: no such public name"
    ]


# -- links ----------------------------------------------------------------------------------------


def _anchors(page: Path) -> set[str]:
    """GitHub's anchors for the page's headings: lower case, punctuation dropped, spaces as hyphens."""
    anchors: set[str] = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *$", _without_fences(page.read_text()), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        anchor, suffix = slug, 1
        while anchor in anchors:
            anchor, suffix = f"{slug}-{suffix}", suffix + 1
        anchors.add(anchor)
    return anchors


@pytest.mark.parametrize("page", PAGES, ids=_relative)
def test_every_relative_link_on_the_page_points_to_a_file_and_heading_that_exist(page):
    text = _without_fences(page.read_text())
    broken = []
    for match in LINK.finditer(text):
        target = match.group(1)
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        where = f"{_relative(page)}:{_line_of(text, match.start())}: {target}"
        if not resolved.exists():
            broken.append(f"{where}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            broken.append(f"{where}: no such heading")
    assert broken == []


def test_the_docs_index_links_every_docs_page():
    index = (ROOT / "docs" / "README.md").read_text()
    linked = {match.group(1).partition("#")[0] for match in LINK.finditer(index)}
    pages = {page.name for page in (ROOT / "docs").glob("*.md")} - {"README.md"}
    assert pages - linked == set()


# -- the benchmark block --------------------------------------------------------------------------


def test_the_benchmark_rewrites_its_block_on_the_performance_page():
    source = (ROOT / "benchmarks" / "rollouts.py").read_text()
    constants = {
        node.targets[0].id: node.value.value
        for node in ast.parse(source).body
        if isinstance(node, ast.Assign)
        and isinstance(node.targets[0], ast.Name)
        and isinstance(node.value, ast.Constant)
    }
    page = ROOT / constants["DEFAULT_DOC"]
    text = page.read_text()
    assert text.count(constants["BLOCK_START"]) == 1 and text.count(constants["BLOCK_END"]) == 1
    assert text.index(constants["BLOCK_START"]) < text.index(constants["BLOCK_END"])
    assert f"python benchmarks/rollouts.py --doc {constants['DEFAULT_DOC']}" in text
    assert constants["BLOCK_START"] not in (ROOT / "README.md").read_text()
