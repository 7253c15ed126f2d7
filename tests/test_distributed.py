"""Ray Data scoring on a local 2-CPU cluster with the tiny model."""

import os
import signal
import subprocess
import threading
import time

import pytest
from helpers import OPTIONS, SCORE_COLUMNS

from difficulty_curation import ConfigError, score_difficulty, score_distributed

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=300 * 2**20)
    yield
    ray.shutdown()


def _columns(dataset):
    return {column: dataset[column][:] for column in SCORE_COLUMNS}


def test_the_distributed_result_equals_the_single_process_result(local_cluster, trained_vlm, digits):
    distributed = score_distributed(digits, score_difficulty(str(trained_vlm), **OPTIONS), num_workers=2, batch_size=5)
    single = digits.map(score_difficulty(str(trained_vlm), **OPTIONS), batched=True, batch_size=8)
    assert distributed.column_names == single.column_names
    assert _columns(distributed) == _columns(single)
    assert distributed["solution"] == digits["solution"]


def _map_workers() -> list[int]:
    listing = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in listing.splitlines() if "_BatchScorer" in line and "ps -eo" not in line]


def test_a_killed_worker_is_restarted_without_losing_or_duplicating_rows(local_cluster, tiny_vlm, digits):
    def slow_exact(completion, reference):
        time.sleep(0.02)  # keeps each batch busy long enough to kill a worker mid-run
        return float(completion.strip() == reference)

    result, killed = {}, []

    def run():
        scorer = score_difficulty(str(tiny_vlm), verifier=slow_exact, **OPTIONS)
        result["scored"] = score_distributed(digits, scorer, num_workers=2, batch_size=3)

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 120
    while not killed and time.monotonic() < deadline and worker.is_alive():
        pids = _map_workers()
        if len(pids) >= 2:
            time.sleep(0.5)  # let both workers load the model and start on batches
            running = worker.is_alive()
            try:
                os.kill(pids[0], signal.SIGKILL)
            except ProcessLookupError:  # that worker already ended: look again
                continue
            killed.append((pids[0], running))
        time.sleep(0.1)
    worker.join(timeout=300)
    assert killed, "no worker was found to kill"
    assert killed[0][1], "the run had already finished when the worker was killed"
    scored = result["scored"]
    assert killed[0][0] not in _map_workers()
    single = digits.map(score_difficulty(str(tiny_vlm), verifier=slow_exact, **OPTIONS), batched=True)
    assert len(scored) == len(digits)
    assert _columns(scored) == _columns(single)


def test_bad_worker_counts_are_refused(tiny_vlm, digits):
    with pytest.raises(ConfigError, match="num_workers must be an integer >= 1, got 0"):
        score_distributed(digits, score_difficulty(str(tiny_vlm)), num_workers=0)


def test_curate_score_with_ray_writes_the_scored_dataset(local_cluster, tiny_vlm, digits, tmp_path):
    import json

    from datasets import load_from_disk
    from typer.testing import CliRunner

    from difficulty_curation.cli import app

    data = tmp_path / "digits.parquet"
    digits.select(range(10)).to_parquet(str(data))
    out = tmp_path / "scored"
    args = ["score", str(data), "--model", str(tiny_vlm), "--out", str(out), "--ray", "--num-workers", "2", "-k", "2"]
    args += ["--batch-size", "5"]
    result = CliRunner().invoke(app, [*args, "--max-new-tokens", "2", "--json", "-q"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["num_rows"] == 10
    assert load_from_disk(str(out))["train"]["num_rollouts"] == [2] * 10


def test_a_shuffled_selection_keeps_its_own_row_order(local_cluster, tiny_vlm, digits):
    view = digits.shuffle(seed=3).select(range(10))  # an indices mapping over the original table
    distributed = score_distributed(view, score_difficulty(str(tiny_vlm), **OPTIONS), num_workers=2, batch_size=3)
    single = view.map(score_difficulty(str(tiny_vlm), **OPTIONS), batched=True)
    assert distributed["solution"] == view["solution"]
    assert _columns(distributed) == _columns(single)
