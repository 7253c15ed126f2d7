"""When the endpoint, not the row, is at fault: runs stop with one line and keep their work; secrets never leak.

Every test talks to real processes on 127.0.0.1: tests/openai_test_server.py, or a socket that accepts
connections and never answers.
"""

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
from helpers import start_openai_server
from typer.testing import CliRunner

from difficulty_curation import score_difficulty
from difficulty_curation.cli import app
from difficulty_curation.engines.openai import EndpointError, OpenAIEngine
from difficulty_curation.runners.run_folder import score_to_dir

SECRET = "sk-test-do-not-print-7d1f"
runner = CliRunner()


@pytest.fixture()
def serve(tiny_vlm):
    """Start a test server with the given options; every server is stopped after the test."""
    processes = []

    def start(*extra):
        process, url = start_openai_server(tiny_vlm, *extra)
        processes.append(process)
        return url

    yield start
    for process in processes:
        process.kill()
        process.wait()


@pytest.fixture()
def source(digits, tmp_path):
    path = tmp_path / "source"
    digits.select(range(6)).save_to_disk(str(path))
    return path


def score_command(source, model, url, out, *extra, verbose=False):
    args = [
        *(["--verbose"] if verbose else []),
        "score",
        source,
        "--model",
        model,
        "--backend",
        "openai",
        "--api-base",
        url,
        "--out",
        out,
    ]
    args += ["-k", "2", "--max-new-tokens", "2", "--batch-size", "2", "--quiet", *extra]
    return runner.invoke(app, [str(arg) for arg in args])


def served_requests(url):
    return httpx.get(url + "/stats").json()["requests"]


def test_a_wrong_key_stops_the_run_with_exit_2_and_the_right_key_then_scores_every_row(
    serve, source, tiny_vlm, tmp_path, monkeypatch
):
    url = serve("--api-key", SECRET, "--echo-auth")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong-key-0042")
    wrong = score_command(source, tiny_vlm, url, tmp_path / "run")
    assert wrong.exit_code == 2, wrong.output
    (line,) = wrong.stderr.strip().splitlines()
    assert line.startswith("Error: ") and "refused the API key (401" in line and "OPENAI_API_KEY" in line
    assert "sk-wrong-key-0042" not in wrong.output  # the server echoed it back; it is redacted
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    right = score_command(source, tiny_vlm, url, tmp_path / "run", "--json")
    assert right.exit_code == 0, right.output
    assert json.loads(right.stdout)["num_failed"] == 0


def test_a_key_revoked_mid_run_stops_it_and_a_resume_generates_only_the_unfinished_rows(
    serve, digits, tiny_vlm, tmp_path
):
    rows, out = digits.select(range(6)), tmp_path / "run"

    def run(url):
        scorer = score_difficulty(str(tiny_vlm), backend="openai", api_base=url, num_rollouts=2, max_new_tokens=2)
        scorer.engine = OpenAIEngine(scorer.config, api_key=SECRET, max_concurrency=1, backoff=0.01)
        return score_to_dir(rows, scorer, out, batch_size=2, progress=False)

    revoking = serve("--api-key", SECRET, "--revoke-after", "6")  # one request per rollout: rows 0-2 answered
    with pytest.raises(EndpointError, match="refused the API key"):
        run(revoking)
    manifest = json.loads((out / ".curate" / "manifest.json").read_text())["shards"]
    assert list(manifest) == ["train-00000000.parquet"]  # batch 0 is kept
    fresh = serve("--api-key", SECRET)
    scored = run(fresh)
    assert set(scored["difficulty_error"]) == {""} and scored["num_rollouts"] == [2] * 6
    # row 2 was answered before the key was revoked and kept in the rollout cache: only rows 3-5 are new
    assert served_requests(fresh) == 3 * 2  # one request per rollout


def test_retry_failed_scores_the_rows_an_earlier_run_recorded_as_failed(serve, source, tiny_vlm, tmp_path):
    url = serve("--reject-first", "1")
    first = score_command(source, tiny_vlm, url, tmp_path / "run", "--json")
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["num_failed"] == 1  # a 400 answer fails only its row
    served = served_requests(url)
    again = score_command(source, tiny_vlm, url, tmp_path / "run", "--json", "--retry-failed")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["num_failed"] == 0
    assert served_requests(url) == served + 2  # that row's k=2 rollouts; the others came from the rollout cache


class SilentServer:
    """A TCP server on 127.0.0.1 that accepts every connection and never answers."""

    def __init__(self):
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}/v1"
        self.accepted = threading.Event()
        self.connections = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            self.connections.append(connection)
            self.accepted.set()

    def close(self):
        self.socket.close()
        for connection in self.connections:
            connection.close()


@pytest.mark.parametrize(("signal_number", "exit_code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_a_run_hanging_on_a_silent_server_within_seconds(
    signal_number, exit_code, source, tiny_vlm, tmp_path
):
    server = SilentServer()
    command = [sys.executable, "-m", "difficulty_curation.cli", "score", str(source), "--model", str(tiny_vlm)]
    command += ["--backend", "openai", "--api-base", server.url, "--out", str(tmp_path / "run"), "--quiet"]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "OPENAI_API_KEY": ""}
    )
    try:
        assert server.accepted.wait(180), "the run never sent a request"
        time.sleep(0.5)
        sent = time.monotonic()
        process.send_signal(signal_number)
        _, stderr = process.communicate(timeout=20)
        assert time.monotonic() - sent < 10
        assert process.returncode == exit_code
        assert "interrupted: run the same command to resume" in stderr
        assert "Traceback" not in stderr
        assert (tmp_path / "run" / ".curate" / "run.json").exists()
    finally:
        process.kill()
        process.wait()
        server.close()


def test_secrets_echoed_by_the_server_or_written_into_the_api_base_are_stored_and_shown_redacted(
    serve, source, tiny_vlm, tmp_path, caplog
):
    url = serve("--reject-first", "2", "--echo-auth")
    password = "sk-url-secret-3141"
    credentialed = url.replace("http://", f"http://me:{password}@")
    basic = base64.b64encode(f"me:{password}".encode()).decode()
    out = tmp_path / "run"
    scored = score_command(source, tiny_vlm, credentialed, out, verbose=True)
    assert scored.exit_code == 0, scored.output
    stats = runner.invoke(app, ["stats", str(out)])
    card = runner.invoke(app, ["card", str(out), "--out", str(tmp_path / "card" / "README.md")])
    assert stats.exit_code == 0 and card.exit_code == 0, stats.output + card.output
    assert "Basic ***" in stats.output  # the echoed header, redacted in difficulty_error
    shown = scored.output + stats.output + card.output + caplog.text
    files = b"".join(p.read_bytes() for folder in (out, tmp_path / "card") for p in folder.rglob("*") if p.is_file())
    for secret in (password, basic):
        assert secret not in shown
        assert secret.encode() not in files
    assert json.loads((out / ".curate" / "run.json").read_text())["scoring"]["api_base"] == url


def test_an_api_base_with_credentials_beside_a_set_api_key_is_refused_in_one_line(
    source, tiny_vlm, tmp_path, monkeypatch
):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-set-key-2718")
    started = time.monotonic()
    result = score_command(source, tiny_vlm, "http://me:sk-url-pass-1618@127.0.0.1:9/v1", tmp_path / "run")
    assert result.exit_code == 2
    assert result.output.strip() == (
        "Error: api_base 'http://127.0.0.1:9/v1' carries user:password@ credentials and OPENAI_API_KEY is set too: "
        "they would be sent instead of the key. Drop the credentials from --api-base, or unset OPENAI_API_KEY."
    )
    assert time.monotonic() - started < 10  # no retries against the endpoint
