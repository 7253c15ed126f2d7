"""`curate score --ray --out DIR` on a Ray cluster of two nodes started on this machine.

The run folder is the same as a local run's: batches are recorded on the driver as they land, so
a driver killed mid-run resumes like a local run, without redoing the batches it recorded.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from datasets import load_from_disk

from difficulty_curation import score_difficulty, score_to_dir
from difficulty_curation.demo import digits_dataset

pytest.importorskip("ray")
#: Two Ray nodes started, killed and restarted: a minutes-class end-to-end run, in the slow tier
#: (`make test-slow`, run by CI); the default tier covers Ray with a local cluster (test_distributed.py).
pytestmark = pytest.mark.slow
RAY = Path(sys.executable).with_name("ray")
#: A cluster on 127.0.0.1 for one test module: Ray 2.60's `ray start --head` turns on token
#: authentication, which a second `ray start --address` then fails; nothing outside this machine
#: can reach these nodes.
RAY_ENVIRONMENT = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
SCORING = ["-k", "4", "--max-new-tokens", "4", "--keep-rollouts"]
COLUMNS = ["difficulty", "num_correct", "num_rollouts", "difficulty_error", "rollouts", "rollout_scores"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def two_node_cluster(tmp_path_factory):
    """A head node and a second node, one CPU each, as `ray start` makes them; stopped afterwards."""
    port = _free_port()
    environment = {**os.environ, **RAY_ENVIRONMENT}
    common = ["--num-cpus", "1", "--disable-usage-stats"]
    subprocess.run(
        [str(RAY), "start", "--head", "--port", str(port), "--include-dashboard", "false", *common],
        check=True,
        capture_output=True,
        env=environment,
    )
    try:
        subprocess.run(
            [str(RAY), "start", "--address", f"127.0.0.1:{port}", *common],
            check=True,
            capture_output=True,
            env=environment,
        )
        deadline = time.monotonic() + 60
        while _nodes(port, environment) < 2 and time.monotonic() < deadline:
            time.sleep(1)
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([str(RAY), "stop", "--force"], capture_output=True, env=environment)


def _nodes(port, environment):
    status = subprocess.run(
        [str(RAY), "status", "--address", f"127.0.0.1:{port}"], capture_output=True, text=True, env=environment
    )
    return status.stdout.count(" node_")


def _curate(args, address, **kwargs):
    environment = {**os.environ, **RAY_ENVIRONMENT, "RAY_ADDRESS": address}
    return subprocess.Popen(
        [sys.executable, "-m", "difficulty_curation.cli", *args],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def _shards(run: Path) -> dict[str, float]:
    folder = run / ".curate" / "shards"
    return {path.name: path.stat().st_mtime_ns for path in folder.glob("*.parquet")} if folder.exists() else {}


def _recorded(run: Path) -> dict[str, float]:
    """The shards the manifest records as finished batches (a shard written but not yet recorded when the
    driver died is not finished: the resumed run redoes it, from the rollout cache)."""
    manifest = run / ".curate" / "manifest.json"
    try:
        names = json.loads(manifest.read_text())["shards"]
    except (OSError, ValueError, KeyError):
        return {}
    shards = _shards(run)
    return {name: shards[name] for name in names if name in shards}


def test_the_cluster_has_two_nodes(two_node_cluster):
    assert _nodes(int(two_node_cluster.rsplit(":", 1)[1]), {**os.environ, **RAY_ENVIRONMENT}) == 2


def test_a_driver_killed_mid_run_resumes_without_redoing_recorded_batches(two_node_cluster, tiny_vlm, tmp_path):
    rows = digits_dataset(split="train", num_rows=60)
    data = tmp_path / "digits.parquet"
    rows.to_parquet(str(data))
    run = tmp_path / "run"
    args = ["score", str(data), "--model", str(tiny_vlm), "--out", str(run), "--ray", "--num-workers", "2"]
    args += ["--batch-size", "3", *SCORING, "-q"]

    driver = _curate(args, two_node_cluster)
    deadline = time.monotonic() + 240
    while len(_recorded(run)) < 3 and driver.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert driver.poll() is None, f"the run ended before it could be killed: {driver.communicate()}"
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    recorded = _recorded(run)
    assert 3 <= len(recorded) < 20, recorded

    resumed = _curate(args, two_node_cluster)
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    after = _shards(run)
    assert len(after) == 20
    assert {name: after[name] for name in recorded} == recorded  # recorded batches were not scored again

    scorer = score_difficulty(str(tiny_vlm), num_rollouts=4, max_new_tokens=4, keep_rollouts=True)
    expected = score_to_dir(rows, scorer, tmp_path / "local", batch_size=3, progress=False)
    scored = load_from_disk(str(run))["train"]
    for column in COLUMNS:
        assert scored[column] == expected[column], column


def test_a_ray_run_refuses_a_folder_scored_with_other_settings(two_node_cluster, tiny_vlm, digits, tmp_path):
    data = tmp_path / "digits.parquet"
    digits.select(range(6)).to_parquet(str(data))
    run = tmp_path / "run"
    base = ["score", str(data), "--model", str(tiny_vlm), "--out", str(run), "--batch-size", "3", "-q"]
    first = _curate([*base, "-k", "2", "--max-new-tokens", "2"], two_node_cluster)
    assert first.wait(timeout=300) == 0, first.communicate()
    other = _curate([*base, "-k", "3", "--max-new-tokens", "2", "--ray"], two_node_cluster)
    _, err = other.communicate(timeout=300)
    assert other.returncode != 0
    assert "num_rollouts" in err and "Traceback" not in err
