"""Score on a Ray cluster: one engine per actor, GPUs when present, batches handed out as actors free up.

`score_batches_on_ray` is the one mechanism; `score_distributed` runs it in memory and
`score_to_dir(..., ray=RayOptions(...))` records each batch in a run folder as it lands. Both give
the same columns as one process and, on the transformers backend, the same values row for row:
every rollout is seeded from its own row and index, never from which worker or batch it lands in.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from datasets import Dataset, DatasetDict, concatenate_datasets

from difficulty_curation.config import DEFAULT_BATCH_SIZE
from difficulty_curation.errors import ConfigError, CurationError, missing_dependency
from difficulty_curation.progress import RolloutProgress
from difficulty_curation.provenance import attach_provenance, scoring_provenance, with_finish_counts
from difficulty_curation.redact import get_logger
from difficulty_curation.schema import score_table, undecoded_images
from difficulty_curation.scoring import BatchReport, DifficultyScorer, score_difficulty
from difficulty_curation.splits import map_splits

logger = get_logger(__name__)


def score_distributed(
    dataset: Dataset | DatasetDict,
    scorer: DifficultyScorer,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = True,
    num_workers: int = 2,
    resources_per_worker: dict[str, float] | None = None,
    address: str | None = None,
) -> Dataset | DatasetDict:
    """Score `dataset` (every split of a `DatasetDict`) on `num_workers` Ray actors, each holding one engine.

    The Ray runner, beside `score_dataset` and `score_to_dir`: same arguments first, same columns
    and provenance out. Connects to the cluster at `address` (or `$RAY_ADDRESS`), else starts a
    local one. Each worker asks for `resources_per_worker` (default: one GPU if this machine has
    one, else one CPU). A worker that dies is restarted by Ray and its batch retried; the result is
    checked to hold every batch exactly once. `progress` shows the progress line (rows, rollouts/s,
    ETA). For a run that survives its driver, use `score_to_dir(..., ray=RayOptions(...))`.

    Raises:
        ColumnNotFoundError: a column the scorer reads is missing (before Ray starts).
        MissingDependencyError: Ray is not installed.

    Example:
        >>> scored = score_distributed(ds, score_difficulty("my-org/my-vlm"), num_workers=8)  # doctest: +SKIP
    """
    if isinstance(dataset, DatasetDict):
        options = {"batch_size": batch_size, "progress": progress, "num_workers": num_workers}
        options.update(resources_per_worker=resources_per_worker, address=address)
        return map_splits(lambda part: score_distributed(part, scorer, **options), dataset)
    options = RayOptions(num_workers=num_workers, resources_per_worker=resources_per_worker, address=address)
    if batch_size < 1:
        raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}.")
    scorer.check_columns(dataset.column_names)
    needed = scorer.config.columns.names
    rows = undecoded_images(dataset.select_columns(needed), scorer.config.image_column).with_format("arrow")
    spans = [(start, min(start + batch_size, len(dataset))) for start in range(0, len(dataset), batch_size)]
    batches = ((("", index, start, stop), rows[start:stop]) for index, (start, stop) in enumerate(spans))
    bar = RolloutProgress(len(dataset), enabled=progress)
    tables: dict[int, pa.Table] = {}
    try:
        for (_, index, _, _), columns, _, report in score_batches_on_ray(scorer, batches, options):
            tables[index] = score_table(columns, scorer.config)
            bar.update(report)
    finally:
        bar.close()
    scores = pa.concat_tables([tables[index] for index in range(len(spans))]) if spans else None
    if scores is None or len(scores) != len(dataset):
        raise CurationError(f"the Ray run returned {len(tables)} of {len(spans)} batches; nothing was saved.")
    scored = concatenate_datasets([dataset, Dataset(scores)], axis=1)
    return attach_provenance(scored, with_finish_counts(scoring_provenance(scorer), scored))


@dataclass(frozen=True)
class RayOptions:
    """Where and on how many workers a run goes on Ray (`score_to_dir(..., ray=RayOptions(...))`).

    `address` is the cluster's (else `$RAY_ADDRESS`, else a new local cluster); each of the
    `num_workers` workers holds one engine and asks for `resources_per_worker` (default: one GPU
    if this machine has one, else one CPU).
    """

    num_workers: int = 2
    resources_per_worker: dict[str, float] | None = None
    address: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.num_workers, bool) or not isinstance(self.num_workers, int) or self.num_workers < 1:
            raise ConfigError(f"num_workers must be an integer >= 1, got {self.num_workers!r}.")


#: One run-folder batch for a Ray worker: (split, batch index, first row, end row) and its undecoded rows.
BatchKey = tuple[str, int, int, int]


def score_batches_on_ray(
    scorer: DifficultyScorer,
    batches: Iterable[tuple[BatchKey, pa.Table]],
    options: RayOptions,
) -> Iterator[tuple[BatchKey, dict[str, list[Any]], dict[str, list[str]], BatchReport]]:
    """Score run-folder batches on Ray actors, yielding each as it finishes, in whatever order.

    Yields the batch's key, its score columns, the rollouts it generated (for the driver's rollout
    cache: workers on other nodes cannot reach it) and its `BatchReport`. The driver records each
    batch as it lands, so a driver that dies loses only the batches still in flight. A worker that
    dies is restarted by Ray and its batch retried; an error the scorer raises on purpose (a refused
    key, a model that cannot load) stops the run with that error.
    """
    items = iter(batches)
    first = next(items, None)
    if first is None:
        return
    ray = _ray(options.address)
    resources = options.resources_per_worker or _default_resources()
    actor_class = ray.remote(
        num_cpus=resources.get("CPU", 1),
        num_gpus=resources.get("GPU", 0),
        resources={k: v for k, v in resources.items() if k not in ("CPU", "GPU")} or None,
        max_restarts=-1,
        max_task_retries=-1,
    )(_BatchScorer)
    actors = [actor_class.remote(scorer) for _ in range(options.num_workers)]
    work = itertools.chain([first], items)
    in_flight: dict[Any, Any] = {}  # result ref -> the actor computing it; one batch per actor at a time

    def give_work(actor: Any) -> None:
        item = next(work, None)
        if item is not None:
            in_flight[actor.score.remote(*item)] = actor

    try:
        for actor in actors:
            give_work(actor)
        while in_flight:
            (ready,), _ = ray.wait(list(in_flight), num_returns=1)
            actor = in_flight.pop(ready)
            result = ray.get(ready)
            give_work(actor)
            yield result
    except ray.exceptions.RayTaskError as error:
        cause = error.as_instanceof_cause()
        if isinstance(cause, CurationError):
            raise cause from None
        raise
    finally:
        for actor in actors:
            ray.kill(actor)


class _BatchScorer:
    """A Ray actor holding one engine; scores one run-folder batch per call."""

    def __init__(self, scorer: DifficultyScorer) -> None:
        self.scorer = scorer  # arrives pickled: configuration only, the model loads here
        self.failure: CurationError | None = None
        try:
            _ = self.scorer.engine
        except CurationError as error:  # reported with the first batch, not as a crash Ray would restart
            self.failure = error

    def score(
        self, key: BatchKey, rows: pa.Table
    ) -> tuple[BatchKey, dict[str, list[Any]], dict[str, list[str]], BatchReport]:
        if self.failure is not None:
            raise self.failure
        cache, reports = _RecordingCache(), []
        run = self.scorer.for_run(on_batch=reports.append, rollout_cache=cache)  # type: ignore[arg-type]
        columns = run(rows.to_pydict())
        return key, columns, cache.stored, reports[0]


class _RecordingCache:
    """A rollout cache that starts empty and keeps what the scorer stores, to send back to the driver."""

    def __init__(self) -> None:
        self.stored: dict[str, list[str]] = {}

    def get_many(self, keys: Iterable[str]) -> dict[str, list[str]]:
        return {}

    def put_many(self, rollouts: dict[str, list[str]]) -> None:
        self.stored.update(rollouts)


def _ray(address: str | None) -> Any:
    try:
        import ray
    except ImportError:
        raise missing_dependency("Ray", "ray", "distributed scoring") from None
    if not ray.is_initialized():
        target = address or os.environ.get("RAY_ADDRESS")
        logger.info("connecting to Ray at %s", target or "a new local cluster")
        ray.init(address=target, ignore_reinit_error=True, log_to_driver=False, include_dashboard=False)
    return ray


def _default_resources() -> dict[str, float]:
    import torch

    return {"CPU": 1, "GPU": 1} if torch.cuda.is_available() else {"CPU": 1}


def score_difficulty_distributed(
    dataset: Dataset | DatasetDict,
    model: str,
    *,
    num_workers: int = 2,
    resources_per_worker: dict[str, float] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    address: str | None = None,
    **options: Any,
) -> Dataset | DatasetDict:
    """Deprecated spelling of `score_distributed(dataset, score_difficulty(model, **options), ...)`; kept importable."""
    return score_distributed(
        dataset,
        score_difficulty(model, **options),
        batch_size=batch_size,
        num_workers=num_workers,
        resources_per_worker=resources_per_worker,
        address=address,
    )
