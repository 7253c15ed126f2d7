"""Durable scoring runs in a folder: resume after any crash, never redo or lose a finished row.

`score_to_dir` runs the job, here or on Ray; the folder's state (spec, manifest, shards) is
`run_state.RunFolder`'s. Batches are fixed by the batch size and the input order, and each
generate call is seeded from its batch's content, so a resumed run produces exactly what an
uninterrupted one would. A batch whose rows changed since it was scored (their fingerprint, see
`RunInputs.fingerprint`) is scored again; every other finished batch is kept.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from datasets import Dataset, DatasetDict

from difficulty_curation.config import DEFAULT_BATCH_SIZE
from difficulty_curation.errors import ConfigError
from difficulty_curation.progress import RolloutProgress
from difficulty_curation.provenance import scoring_provenance
from difficulty_curation.redact import get_logger
from difficulty_curation.rollout_cache import RolloutCache
from difficulty_curation.runners.preamble import RunInputs, warn_about
from difficulty_curation.runners.run_state import RunFolder, RunSpec
from difficulty_curation.schema import score_table
from difficulty_curation.scoring import DifficultyScorer, stop_at_first_failure

if TYPE_CHECKING:
    from difficulty_curation.runners.distributed import RayOptions

logger = get_logger(__name__)

#: The batches a run still has to score, per split: (batch index, first row, end row).
Todo = dict[str, list[tuple[int, int, int]]]


def score_to_dir(
    dataset: Dataset | DatasetDict,
    scorer: DifficultyScorer,
    out_dir: str | Path,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    source: str | None = None,
    progress: bool = True,
    fail_fast: bool = False,
    overwrite: bool = False,
    retry_failed: bool = False,
    ray: RayOptions | None = None,
    pilot: bool = False,
) -> Dataset | DatasetDict:
    """Score `dataset` into the run folder `out_dir`, resuming whatever an earlier run finished.

    Returns the scored dataset (also saved at `out_dir`, loadable with `datasets.load_from_disk`).
    Re-running with the same arguments after a crash or Ctrl-C continues where it stopped; other
    scoring settings against the same folder are refused unless `overwrite=True`. With
    `retry_failed=True`, rows an earlier run recorded as failed are tried again (rows that scored
    keep their cached rollouts). A run that ends with more than half its rows failed, or with every
    scored row in one bucket, logs a warning saying so.

    With `ray=RayOptions(num_workers=...)` the batches are scored on a Ray cluster, one engine per
    worker, into the same run folder: each batch is recorded as it lands, so a run whose driver
    dies resumes like a local one (on Ray or not). Where the work runs is not part of the run's
    settings; the rows and scores are the same.

    `pilot=True` marks the run as a `curate plan` pilot: the next run in `out_dir` replaces it (whatever
    its settings), its rollouts staying cached, and a plan the folder holds goes into that run's provenance.

    Raises:
        EngineError: the engine or endpoint failed in a way that is not a row's fault; what was
            finished is kept, and the same call resumes once the cause is fixed.
    """
    inputs = RunInputs(dataset, scorer, batch_size)
    if not inputs.num_rows:
        raise ConfigError(
            f"the dataset to score has no rows (splits: {', '.join(inputs.splits) or 'none'}); "
            "pass a source or --split that holds rows."
        )
    spec = RunSpec(
        scoring=scorer.config.to_dict(),
        splits={name: len(part) for name, part in inputs.splits.items()},
        batch_size=batch_size,
        source=source,
        pilot=pilot,
    )
    RunFolder.check_root(out_dir, inputs=[source] if source else ())
    run = RunFolder.open(out_dir, spec, overwrite=overwrite)
    try:
        if retry_failed:
            run.forget_failed_batches()
        todo = _unfinished_batches(run, inputs)
        cache = RolloutCache(run.state / "rollouts.sqlite")
        remaining = sum(stop - start for batches in todo.values() for _, start, stop in batches)
        if remaining and ray is None:
            _ = scorer.engine  # load the model before the clock starts: rates and ETA count generation only
        bar = RolloutProgress(inputs.num_rows, enabled=progress, initial_rows=inputs.num_rows - remaining)
        try:
            if ray is None:
                _score_here(
                    run, inputs, todo, scorer.for_run(on_batch=bar.update, rollout_cache=cache, fail_fast=fail_fast)
                )
            else:
                _score_on_ray(run, inputs, todo, scorer, cache, bar, ray, fail_fast=fail_fast)
        finally:
            bar.close()
            cache.close()
        provenance = scoring_provenance(scorer, source=source)
        plan = run.plan(scorer.config)
        scored = run.assemble(dataset, {**provenance, "plan": plan} if plan else provenance)
    finally:
        run.close()
    warn_about(scored, where=run.root)
    return scored


def _unfinished_batches(run: RunFolder, inputs: RunInputs) -> Todo:
    """Every batch `run` has not finished for these very rows (a finished batch of other rows is redone)."""
    todo: Todo = {name: [] for name in inputs.splits}
    changed = 0
    for name in inputs.splits:
        for index, (start, stop) in enumerate(inputs.batches(name)):
            if run.is_finished(name, index):
                if run.scored_from(name, index) == inputs.fingerprint(name, start, stop):
                    continue
                changed += 1
            todo[name].append((index, start, stop))
    if changed:
        logger.warning(
            "%d finished batches were scored from other rows than the source holds now (edited, relabelled "
            "or reordered rows); scoring them again, with cached rollouts for every unchanged prompt",
            changed,
        )
    return todo


def _score_here(run: RunFolder, inputs: RunInputs, todo: Todo, scorer: DifficultyScorer) -> None:
    """The batches of `todo` in this process, each recorded as it finishes."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prepare") as preparer:
        for name, batches in todo.items():
            readable = inputs.readable[name]
            # Prepare batch i+1 (image decoding, resizing, hashing) while batch i generates.
            upcoming = preparer.submit(scorer.prepare, readable[batches[0][1] : batches[0][2]]) if batches else None
            for position, (index, start, stop) in enumerate(batches):
                prepared = upcoming.result()
                if position + 1 < len(batches):
                    _, next_start, next_stop = batches[position + 1]
                    upcoming = preparer.submit(scorer.prepare, readable[next_start:next_stop])
                columns = scorer.finish(prepared, indices=range(start, stop))
                table = score_table(columns, scorer.config)
                run.write_shard(name, index, start, stop, table, inputs.fingerprint(name, start, stop))


def _score_on_ray(
    run: RunFolder,
    inputs: RunInputs,
    todo: Todo,
    scorer: DifficultyScorer,
    cache: RolloutCache,
    bar: RolloutProgress,
    options: RayOptions,
    *,
    fail_fast: bool,
) -> None:
    """The batches of `todo` on Ray workers; each is recorded here, on the driver, as it lands."""
    from difficulty_curation.runners.distributed import score_batches_on_ray

    batches = (
        ((name, index, start, stop), inputs.rows(name, start, stop))
        for name, split_todo in todo.items()
        for index, start, stop in split_todo
    )
    for (name, index, start, stop), columns, rollouts, report in score_batches_on_ray(scorer, batches, options):
        cache.put_many(rollouts)  # before the shard: a crash between the two never loses a rollout
        if fail_fast:
            stop_at_first_failure(columns["difficulty_error"], range(start, stop))
        table = score_table(columns, scorer.config)
        run.write_shard(name, index, start, stop, table, inputs.fingerprint(name, start, stop))
        bar.update(report)
