import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest
from datasets import Dataset, load_from_disk
from helpers import OPTIONS, SCORE_COLUMNS, counted_scorer, scores

from difficulty_curation import register_verifier, score_difficulty, verifiers
from difficulty_curation.demo import digits_dataset
from difficulty_curation.errors import ConfigError, RowFailedError, RunStateError
from difficulty_curation.outputs import RUN_STATE_DIR as STATE_DIR
from difficulty_curation.rollout_cache import RolloutCacheError, rollout_key
from difficulty_curation.runners import rescore_dir, score_to_dir


def test_a_finished_run_is_a_loadable_dataset_with_score_columns(reference_run, twelve_digits, tmp_path):
    assert reference_run.column_names == [*twelve_digits.column_names, *SCORE_COLUMNS]
    assert reference_run["solution"] == twelve_digits["solution"]
    assert reference_run.features["difficulty"].dtype == "float32"
    assert reference_run[0]["image"].size == (8, 8)


def test_rerunning_a_finished_run_generates_nothing(tiny_vlm, twelve_digits, reference_run, tmp_path):
    out = tmp_path / "run"
    first, _ = counted_scorer(tiny_vlm)
    score_to_dir(twelve_digits, first, out, batch_size=4, progress=False)
    again, engine = counted_scorer(tiny_vlm)
    result = score_to_dir(twelve_digits, again, out, batch_size=4, progress=False)
    assert engine.requests == []
    assert scores(result) == scores(reference_run)


RUNNER = textwrap.dedent(
    """
    import json, os, sys, time
    from datasets import load_from_disk
    from difficulty_curation import score_difficulty
    from difficulty_curation.engines.loader import load_engine
    from difficulty_curation.runners.run_folder import score_to_dir

    data, model, out, log = sys.argv[1:5]
    scorer = score_difficulty(model, num_rollouts=4, max_new_tokens=4, keep_rollouts=True)

    class LoggingEngine:
        def __init__(self, inner):
            self.inner = inner

        def generate(self, requests, num_rollouts, **options):
            with open(log, "a") as handle:
                handle.write(json.dumps([r.content_hash for r in requests]) + "\\n")
                handle.flush()
                os.fsync(handle.fileno())
            time.sleep(0.05)
            return self.inner.generate(requests, num_rollouts)

    scorer.engine = LoggingEngine(load_engine(scorer.config))
    score_to_dir(load_from_disk(data), scorer, out, batch_size=4, progress=False)
    print("finished")
    """
)


def _logged_calls(log):
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def _persisted(out, config, hashes):
    cache = out / STATE_DIR / "rollouts.sqlite"
    if not cache.exists():
        return set()
    connection = sqlite3.connect(cache)
    try:
        keys = {row[0] for row in connection.execute("SELECT key FROM rollouts")}
    finally:
        connection.close()
    return {h for h in hashes if rollout_key(config, h) in keys}


def test_sigkill_at_random_points_then_resume_equals_an_uninterrupted_run(tiny_vlm, tmp_path):
    data = tmp_path / "data"
    digits_dataset(split="train", num_rows=40).save_to_disk(str(data))
    out, log = tmp_path / "run", tmp_path / "engine.log"
    command = [sys.executable, "-c", RUNNER, str(data), str(tiny_vlm), str(out), str(log)]
    config = score_difficulty(str(tiny_vlm), **OPTIONS).config
    rng = random.Random(7)
    persisted_at_kill = []
    for _ in range(3):
        calls_before = len(_logged_calls(log))
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        target = calls_before + rng.randint(1, 3)
        deadline = time.monotonic() + 120
        while len(_logged_calls(log)) < target and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.08))  # land inside generation, or between it and the writes
        process.send_signal(signal.SIGKILL)
        assert process.wait() == -signal.SIGKILL, "the run ended before it could be killed"
        calls = _logged_calls(log)
        persisted_at_kill.append((len(calls), _persisted(out, config, {h for call in calls for h in call})))
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0 and "finished" in finished.stdout, finished.stderr[-2000:]

    calls = _logged_calls(log)
    for calls_until_kill, persisted in persisted_at_kill:
        regenerated = {h for call in calls[calls_until_kill:] for h in call} & persisted
        assert not regenerated, "a row whose rollouts were saved was generated again"
    assert any(persisted for _, persisted in persisted_at_kill), "no kill landed after some progress"

    reference_scorer = score_difficulty(str(tiny_vlm), **OPTIONS)
    reference = score_to_dir(
        load_from_disk(str(data)), reference_scorer, tmp_path / "ref", batch_size=4, progress=False
    )
    assert scores(load_from_disk(str(out))) == scores(reference)


def test_a_truncated_shard_is_detected_and_redone_from_the_rollout_cache(
    tiny_vlm, twelve_digits, reference_run, tmp_path
):
    out = tmp_path / "run"
    first, _ = counted_scorer(tiny_vlm)
    score_to_dir(twelve_digits, first, out, batch_size=4, progress=False)
    shard = out / STATE_DIR / "shards" / "train-00000001.parquet"
    shard.write_bytes(shard.read_bytes()[:50])
    again, engine = counted_scorer(tiny_vlm)
    result = score_to_dir(twelve_digits, again, out, batch_size=4, progress=False)
    assert engine.requests == []  # the batch was rebuilt from cached rollouts
    assert scores(result) == scores(reference_run)


def test_a_half_written_manifest_is_rebuilt_from_intact_shards(
    tiny_vlm, twelve_digits, reference_run, tmp_path, caplog
):
    out = tmp_path / "run"
    first, _ = counted_scorer(tiny_vlm)
    score_to_dir(twelve_digits, first, out, batch_size=4, progress=False)
    manifest = out / STATE_DIR / "manifest.json"
    manifest.write_text(manifest.read_text()[:40])
    again, engine = counted_scorer(tiny_vlm)
    result = score_to_dir(twelve_digits, again, out, batch_size=4, progress=False)
    assert "manifest" in caplog.text and "damaged" in caplog.text
    assert engine.requests == []
    assert scores(result) == scores(reference_run)
    assert set(json.loads(manifest.read_text())["shards"]) == {f"train-0000000{i}.parquet" for i in range(3)}


def test_a_damaged_run_file_is_rejected_with_what_to_do(tiny_vlm, twelve_digits, tmp_path):
    out = tmp_path / "run"
    score_to_dir(twelve_digits.select(range(2)), counted_scorer(tiny_vlm)[0], out, batch_size=4, progress=False)
    (out / STATE_DIR / "run.json").write_text("{not json")
    with pytest.raises(RunStateError, match=r"run.json' is damaged.*--overwrite"):
        score_to_dir(twelve_digits.select(range(2)), counted_scorer(tiny_vlm)[0], out, batch_size=4, progress=False)


def test_a_corrupt_rollout_cache_is_rejected(tiny_vlm, twelve_digits, tmp_path):
    out = tmp_path / "run"
    (out / STATE_DIR).mkdir(parents=True)
    (out / STATE_DIR / "rollouts.sqlite").write_bytes(b"definitely not sqlite" * 100)
    with pytest.raises(RolloutCacheError, match=r"rollouts.sqlite' is unreadable"):
        score_to_dir(twelve_digits.select(range(2)), counted_scorer(tiny_vlm)[0], out, batch_size=4, progress=False)


def test_other_sampling_settings_against_an_existing_run_are_refused(tiny_vlm, twelve_digits, tmp_path):
    out = tmp_path / "run"
    small = twelve_digits.select(range(4))
    score_to_dir(small, counted_scorer(tiny_vlm)[0], out, batch_size=4, progress=False)
    with pytest.raises(RunStateError, match=r"scoring.temperature: 0.9 there, 0.5 now.*--overwrite"):
        score_to_dir(small, counted_scorer(tiny_vlm, temperature=0.5)[0], out, batch_size=4, progress=False)
    with pytest.raises(RunStateError, match="batch_size: 4 there, 2 now"):
        score_to_dir(small, counted_scorer(tiny_vlm)[0], out, batch_size=2, progress=False)
    fresh, engine = counted_scorer(tiny_vlm, temperature=0.5)
    result = score_to_dir(small, fresh, out, batch_size=4, progress=False, overwrite=True)
    assert len(engine.requests) == 4 and len(result) == 4


def test_a_folder_with_other_files_is_not_used(tiny_vlm, twelve_digits, tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(RunStateError, match="not a scoring run"):
        score_to_dir(twelve_digits, counted_scorer(tiny_vlm)[0], tmp_path, batch_size=4, progress=False)
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        score_to_dir(twelve_digits, counted_scorer(tiny_vlm)[0], target, batch_size=4, progress=False)


def test_rescore_reverifies_cached_rollouts_without_generating(
    tiny_vlm, twelve_digits, reference_run, tmp_path, monkeypatch
):
    monkeypatch.setattr(verifiers, "VERIFIERS", dict(verifiers.VERIFIERS))  # keep the registry clean for others
    register_verifier("always_right", lambda completion, reference: 1.0)
    out = tmp_path / "run"
    score_to_dir(twelve_digits, counted_scorer(tiny_vlm)[0], out, batch_size=4, progress=False)
    rescored = rescore_dir(out, verifier="always_right", out_dir=tmp_path / "rescored", progress=False)
    assert set(rescored["difficulty"]) == {0.0}
    assert rescored["rollouts"] == reference_run["rollouts"]  # the very same rollouts, re-judged
    in_place = rescore_dir(out, correct_threshold=1.0, progress=False)
    assert in_place["difficulty"] == reference_run["difficulty"]  # exact scores are 0 or 1: same result


def test_rescoring_an_unfinished_run_says_how_to_finish_it(tiny_vlm, twelve_digits, tmp_path):
    out = tmp_path / "run"
    (out / STATE_DIR).mkdir(parents=True)
    with pytest.raises(RunStateError, match="not a scoring run folder"):
        rescore_dir(out, verifier="exact")


def test_fail_fast_stops_at_the_first_bad_row_naming_it(tiny_vlm, digits_with_bad_rows, tmp_path):
    with pytest.raises(RowFailedError, match=r"row 1: image: image is missing \(None\)"):
        score_to_dir(
            digits_with_bad_rows,
            counted_scorer(tiny_vlm)[0],
            tmp_path / "run",
            batch_size=4,
            progress=False,
            fail_fast=True,
        )


def test_bad_rows_are_kept_with_their_reasons_in_a_durable_run(tiny_vlm, digits_with_bad_rows, tmp_path):
    result = score_to_dir(
        digits_with_bad_rows, counted_scorer(tiny_vlm)[0], tmp_path / "run", batch_size=4, progress=False
    )
    assert [bool(e) for e in result["difficulty_error"]] == [False, True, False, True, False, True, True, False]


def test_text_only_runs_and_dataset_dicts_keep_their_splits(tiny_lm, tmp_path):
    from datasets import DatasetDict

    part = Dataset.from_dict({"problem": ["1+1?", "2+2?", "3+3?"], "solution": ["2", "4", "6"]})
    scorer = score_difficulty(str(tiny_lm), image_column=None, **OPTIONS)
    result = score_to_dir(
        DatasetDict(train=part, test=part.select(range(1))), scorer, tmp_path / "run", batch_size=2, progress=False
    )
    assert list(result) == ["train", "test"] and len(result["train"]) == 3 and len(result["test"]) == 1
    assert os.path.exists(tmp_path / "run" / "dataset_dict.json")


def test_a_durable_run_equals_a_plain_map_and_prepares_rows_off_the_main_thread(tiny_vlm, twelve_digits, tmp_path):
    import threading

    scorer, _ = counted_scorer(tiny_vlm)
    threads = []
    prepare = scorer.prepare

    def recording_prepare(batch):
        threads.append(threading.current_thread().name)
        return prepare(batch)

    scorer.prepare = recording_prepare
    durable = score_to_dir(twelve_digits, scorer, tmp_path / "run", batch_size=4, progress=False)
    plain = twelve_digits.map(score_difficulty(str(tiny_vlm), **OPTIONS), batched=True, batch_size=5)
    assert scores(durable) == scores(plain)  # other batching, same rollouts
    assert len(threads) == 3 and all(name.startswith("prepare") for name in threads)


def test_a_finished_run_records_its_provenance_in_the_saved_dataset(tiny_vlm, twelve_digits, tmp_path):
    from difficulty_curation.provenance import read_provenance

    scorer, _ = counted_scorer(tiny_vlm, temperature=0.7)
    score_to_dir(twelve_digits, scorer, tmp_path / "run", batch_size=4, progress=False, source="digits/train")
    record = read_provenance(load_from_disk(str(tmp_path / "run")))
    assert record["model"] == str(tiny_vlm) and record["temperature"] == 0.7 and record["num_rollouts"] == 4
    assert record["verifier"] == "exact" and record["source"] == "digits/train" and record["seed"] == 0
    assert record["toolkit_version"] and record["scored_at"].endswith("+00:00")
    assert {"top_p", "top_k", "max_new_tokens", "backend", "correct_threshold", "model_revision"} <= set(record)


def test_rescoring_a_run_with_pass_rate_intervals_replaces_them(tiny_vlm, twelve_digits, tmp_path):
    out = tmp_path / "run"
    score_to_dir(twelve_digits, counted_scorer(tiny_vlm, pass_rate_interval=0.9)[0], out, batch_size=4, progress=False)
    rescored = rescore_dir(out, correct_threshold=0.25, out_dir=tmp_path / "again", progress=False)
    assert rescored.column_names.count("pass_rate_low") == 1 and rescored.column_names.count("difficulty") == 1
    assert all(low <= 1 - d + 1e-6 for low, d in zip(rescored["pass_rate_low"], rescored["difficulty"]))


def test_half_written_files_of_a_killed_run_are_removed_when_it_resumes(
    tiny_vlm, twelve_digits, reference_run, tmp_path, caplog
):
    import tempfile

    out = tmp_path / "run"
    first, _ = counted_scorer(tiny_vlm)
    score_to_dir(twelve_digits, first, out, batch_size=4, progress=False)
    shards = out / STATE_DIR / "shards"
    (shards / "train-00000002.parquet").unlink()
    # what atomic_file leaves when its process is killed mid-write: a shard, the manifest, a plan (not the run's)
    stale = [
        tempfile.mkstemp(prefix=".train-00000002.parquet.", suffix=".parquet", dir=shards)[1],
        tempfile.mkstemp(prefix=".manifest.json.", suffix=".json", dir=out / STATE_DIR)[1],
    ]
    others = tempfile.mkstemp(prefix=".plan.json.", suffix=".json", dir=out / STATE_DIR)[1]
    again, engine = counted_scorer(tiny_vlm)
    with caplog.at_level("INFO"):
        result = score_to_dir(twelve_digits, again, out, batch_size=4, progress=False)
    assert not any(os.path.exists(path) for path in stale) and "half-written" in caplog.text
    assert os.path.exists(others)  # a plan may be writing it: only the run's own files are the run's to remove
    assert sorted(p.name for p in shards.iterdir()) == [f"train-0000000{i}.parquet" for i in range(3)]
    assert engine.requests == []  # the batch came back from the rollout cache
    assert scores(result) == scores(reference_run)
