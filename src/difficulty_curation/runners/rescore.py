"""Rescoring: a finished run verified again from its rollout cache, with no model and no generation."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict, load_from_disk

from difficulty_curation.config import ScoringConfig
from difficulty_curation.errors import ConfigError, RunStateError
from difficulty_curation.outputs import DATASET_FILES, RUN_STATE_DIR, check_output, swap_entries, write_aside
from difficulty_curation.rollout_cache import copy_cache
from difficulty_curation.runlock import RunLock
from difficulty_curation.runners.run_folder import score_to_dir
from difficulty_curation.runners.run_state import RunFolder, RunSpec, drop_scores
from difficulty_curation.scoring import DifficultyScorer, score_difficulty
from difficulty_curation.verifiers import Verifier


def rescore_dir(
    run_dir: str | Path,
    *,
    verifier: str | Verifier | None = None,
    correct_threshold: float | None = None,
    truncated: str | None = None,
    answer_extractor: str | None = None,
    answer_pattern: str | None = None,
    out_dir: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Dataset | DatasetDict:
    """Re-verify a finished run from its rollout cache, no generation: another verifier, threshold,
    truncation policy (`truncated="wrong"` or `"exclude"`) or answer extractor (`answer_extractor`,
    or a regex `answer_pattern` with one group). Options left at None keep the run's.

    Writes to `out_dir` (a new run folder with a copy of the rollout cache) or, without it, replaces
    the scores in `run_dir`. Either way the new run is built aside and swapped in only once it is
    complete, so a rescore that fails half-way leaves every folder as it was. `out_dir` may not be
    another run (its rollout cache would be lost), nor a non-empty folder unless `overwrite=True`.
    """
    run_dir = Path(run_dir)
    target = Path(out_dir) if out_dir is not None else None
    if target is not None and target.resolve() == run_dir.resolve():
        raise ConfigError(
            f"--out {str(target)!r} is the run being rescored; drop --out to rescore it in place, or pass a new folder."
        )
    spec = RunFolder.read_spec(run_dir)
    if target is not None:
        check_output(target, overwrite=overwrite, inputs=[run_dir])
    state = run_dir / RUN_STATE_DIR
    with RunLock(state):
        finished = RunFolder.load_finished(run_dir)
        for leftover in [*state.glob("rescore-*"), *state.glob("replaced-*")]:  # from a rescore that died
            shutil.rmtree(leftover, ignore_errors=True)
        changes: dict[str, Any] = {}
        if verifier is not None:  # a name or a callable, resolved by `score_difficulty` as for any run
            changes["verifier"] = verifier
        if correct_threshold is not None:
            changes["correct_threshold"] = correct_threshold
        if truncated is not None:
            changes["truncated"] = truncated
        if answer_extractor is not None:  # another extractor drops the run's pattern unless one is given
            changes.update(answer_extractor=answer_extractor, answer_pattern=answer_pattern)
        elif answer_pattern is not None:
            changes.update(answer_extractor="regex", answer_pattern=answer_pattern)
        new_scorer = score_difficulty(**{**ScoringConfig.from_dict(spec.scoring).to_dict(), **changes})
        new_scorer.engine = _CacheOnlyEngine()
        if target is None:
            staging = Path(tempfile.mkdtemp(prefix="rescore-", dir=state))
            try:
                _rescore_into(staging, state, finished, new_scorer, spec, progress=progress, link_cache=True)
                _swap_state(staging, run_dir)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        else:
            with write_aside(target, overwrite=overwrite, inputs=[run_dir]) as staging:
                _rescore_into(staging, state, finished, new_scorer, spec, progress=progress, link_cache=False)
    return load_from_disk(str(target if target is not None else run_dir))


def _rescore_into(
    staging: Path,
    state: Path,
    finished: Any,
    scorer: DifficultyScorer,
    spec: RunSpec,
    *,
    progress: bool,
    link_cache: bool,
) -> None:
    """Score `finished` again into the empty run folder `staging`, every rollout from the run's cache."""
    (staging / RUN_STATE_DIR).mkdir()
    if link_cache:  # read the run's own cache in place: nothing is written to it
        os.symlink((state / "rollouts.sqlite").resolve(), staging / RUN_STATE_DIR / "rollouts.sqlite")
    else:
        copy_cache(state / "rollouts.sqlite", staging / RUN_STATE_DIR / "rollouts.sqlite")
    score_to_dir(
        drop_scores(finished), scorer, staging, batch_size=spec.batch_size, source=spec.source, progress=progress
    )


def _swap_state(staging: Path, run_dir: Path) -> None:
    """Move a finished staged run's shards, manifest, run.json and dataset over `run_dir`'s."""
    state, new_state = run_dir / RUN_STATE_DIR, staging / RUN_STATE_DIR
    replaced = Path(tempfile.mkdtemp(prefix="replaced-", dir=state))
    os.replace(state / "shards", replaced / "shards")
    os.replace(new_state / "shards", state / "shards")
    os.replace(new_state / "manifest.json", state / "manifest.json")
    os.replace(new_state / "run.json", state / "run.json")
    shutil.rmtree(replaced, ignore_errors=True)
    swap_entries(staging, run_dir, keep={RUN_STATE_DIR}, last=DATASET_FILES)


class _CacheOnlyEngine:
    """Stands in for the model during rescoring: every rollout must come from the cache."""

    def generate(self, requests: Any, num_rollouts: int, *, first_rollout: int = 0) -> list[list[str]]:
        raise RunStateError(
            f"{len(requests)} rows have no cached rollouts, so they cannot be rescored without the model; "
            "run `curate score` on them first."
        )
