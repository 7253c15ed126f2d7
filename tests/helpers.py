"""What several test files share: an engine that counts its requests, the openai test server, score columns."""

from __future__ import annotations

import contextlib
import copy
import subprocess
import sys
from pathlib import Path

from difficulty_curation import score_difficulty
from difficulty_curation.engines.loader import load_engine

#: Small, fast sampling that keeps its rollouts (for comparing runs row by row).
OPTIONS = {"num_rollouts": 4, "max_new_tokens": 4, "keep_rollouts": True}
SCORE_COLUMNS = [
    "difficulty",
    "num_correct",
    "num_rollouts",
    "num_truncated",
    "difficulty_error",
    "rollouts",
    "rollout_scores",
    "rollout_finish_reasons",
]
OPENAI_TEST_SERVER = Path(__file__).with_name("openai_test_server.py")


class CountingEngine:
    """Wraps a real engine and records every request it is asked to generate."""

    def __init__(self, inner):
        self.inner = inner
        self.requests = []

    def generate(self, requests, num_rollouts, **options):
        self.requests.extend(request.content_hash for request in requests)
        return self.inner.generate(requests, num_rollouts, **options)


def counted_scorer(model, **options):
    """A scorer (OPTIONS, overridden by `options`) on a `CountingEngine`, and that engine."""
    scorer = score_difficulty(str(model), **{**OPTIONS, **options})
    engine = CountingEngine(load_engine(scorer.config))
    scorer.engine = engine
    return scorer, engine


def on_started_engine(scorer, engine):
    """`scorer` on a copy of `engine`, an engine already started for the same model and engine options,
    sampling as `scorer.config` says: starting vLLM takes tens of seconds, so tests share one."""
    shared = copy.copy(engine)
    shared.config = scorer.config
    scorer.engine = shared
    return scorer


def scores(dataset):
    """The score columns of a scored dataset, for comparing two runs."""
    return {column: dataset[column][:] for column in SCORE_COLUMNS}


def start_openai_server(model, *extra):
    """`tests/openai_test_server.py` serving `model` on a free port: (process, base URL)."""
    process = subprocess.Popen(
        [sys.executable, str(OPENAI_TEST_SERVER), "--model", str(model), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    line = process.stdout.readline()
    assert line.startswith("listening on "), line
    return process, line.split()[-1]


@contextlib.contextmanager
def openai_server(model, *extra):
    """`tests/openai_test_server.py` serving `model` for the block: its base URL; stopped afterwards."""
    process, url = start_openai_server(model, *extra)
    try:
        yield url
    finally:
        process.kill()
        process.wait()


def curate(*args):
    """`curate ARGS` through Typer's test runner (every argument as a string)."""
    from typer.testing import CliRunner

    from difficulty_curation.cli import app

    return CliRunner().invoke(app, [str(arg) for arg in args])


def refused(result, message):
    """The command stopped with one `Error:` line holding `message`."""
    output = result.output.strip()
    return result.exit_code == 2 and message in output and len(output.splitlines()) == 1


#: Sampling hot enough that the cold-started model often writes past 2 tokens: some rows are cut off
#: in every rollout, most in some (measured: 70 of 96 rollouts truncated on the first 12 digits).
CUT_OFF = {"num_rollouts": 8, "temperature": 3.0, "max_new_tokens": 2, "keep_rollouts": True}


def assert_finish_reasons_are_real(short, longer):
    """`short` and `longer` hold the same rollouts drawn with a smaller and a larger `max_new_tokens`
    (per-rollout seeds: the same token streams). A rollout that stopped is the same with more room;
    one cut off is a prefix of what more room gives. Returns (truncated, stopped) counts."""
    truncated = stopped = grew = 0
    for row_short, row_longer in zip(short, longer):
        pairs = zip(row_short["rollouts"], row_short["rollout_finish_reasons"], row_longer["rollouts"])
        for text, reason, more in pairs:
            assert reason in ("stop", "length")
            if reason == "stop":
                assert more == text
                stopped += 1
            else:
                # a cut-off text may end inside a multi-byte character, decoded as U+FFFD until more tokens complete it
                assert more.startswith(text.rstrip("\ufffd")), (text, more)
                truncated += 1
                grew += len(more) > len(text)
        assert row_short["num_truncated"] == row_short["rollout_finish_reasons"].count("length")
    assert truncated and stopped and grew, (truncated, stopped, grew)
    return truncated, stopped
