"""Score on many workers with Ray Data: one engine per actor, GPUs when present.

`score_distributed` gives the same columns as the single-process scorer and, on the
transformers backend, the same values row for row: every rollout is seeded from its own row and
index, never from which worker or batch it lands in.
"""

from __future__ import annotations

import copy
import logging
import os
from typing import Any

import pyarrow as pa
from datasets import Dataset, DatasetDict, concatenate_datasets

from difficulty_curation.config import DEFAULT_BATCH_SIZE
from difficulty_curation.errors import ConfigError, CurationError, missing_dependency
from difficulty_curation.provenance import attach_provenance, scoring_provenance
from difficulty_curation.schema import score_table, undecoded_images
from difficulty_curation.scoring import DifficultyScorer, score_difficulty
from difficulty_curation.splits import map_splits

logger = logging.getLogger(__name__)

ROW_COLUMN = "__difficulty_curation_row__"


class _ScoringActor:
    """A Ray Data actor: loads the model once, then scores every batch it is given."""

    def __init__(self, scorer: DifficultyScorer) -> None:
        self.scorer = scorer  # arrives pickled: configuration only, the model loads here
        _ = self.scorer.engine

    def __call__(self, batch: pa.Table) -> pa.Table:
        columns = batch.to_pydict()
        rows = columns.pop(ROW_COLUMN)
        scores = self.scorer(columns)
        table = score_table(scores, self.scorer.config)
        return table.append_column(ROW_COLUMN, pa.array(rows, type=pa.int64()))


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
    checked to hold every input row exactly once. `progress` shows Ray Data's progress bars.

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
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1:
        raise ConfigError(f"num_workers must be an integer >= 1, got {num_workers!r}.")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}.")
    scorer.check_columns(dataset.column_names)
    ray = _ray(address)
    ray.data.DataContext.get_current().enable_progress_bars = progress
    needed = list(dict.fromkeys(scorer.config.required_columns.values()))
    inputs = undecoded_images(dataset.select_columns(needed), scorer.config.image_column)
    inputs = _without_hub_identity(inputs.add_column(ROW_COLUMN, list(range(len(inputs)))))
    resources = resources_per_worker or _default_resources()
    # Enough blocks that every worker gets batches (a small in-memory dataset is otherwise one block).
    num_blocks = max(1, min(-(-len(inputs) // batch_size), num_workers * 8))
    scored = ray.data.from_huggingface(inputs, override_num_blocks=num_blocks).map_batches(
        _ScoringActor,
        fn_constructor_kwargs={"scorer": scorer},
        batch_size=batch_size,
        batch_format="pyarrow",
        concurrency=min(num_workers, num_blocks),  # no idle actors holding a model and a GPU
        num_cpus=resources.get("CPU", 1),
        num_gpus=resources.get("GPU", 0),
        resources={k: v for k, v in resources.items() if k not in ("CPU", "GPU")} or None,
        max_restarts=-1,
        max_task_retries=-1,
    )
    tables = ray.get(scored.to_arrow_refs())
    scores = pa.concat_tables(tables).sort_by(ROW_COLUMN) if tables else None
    rows = scores.column(ROW_COLUMN).to_pylist() if scores is not None else []
    if rows != list(range(len(dataset))):
        raise CurationError(
            f"the Ray run returned {len(rows)} rows for {len(dataset)} inputs "
            f"({len(rows) - len(set(rows))} duplicated); nothing was saved."
        )
    scored = concatenate_datasets([dataset, Dataset(scores.drop_columns([ROW_COLUMN]))], axis=1)
    return attach_provenance(scored, scoring_provenance(scorer))


def _without_hub_identity(dataset: Dataset) -> Dataset:
    """The same rows with no dataset/config name: otherwise Ray's `from_huggingface` first tries
    `load_dataset(name)` to find Hub parquet files, which for a local parquet source means
    `load_dataset("parquet")` and a long wait for the network."""
    info = copy.deepcopy(dataset.info)
    info.dataset_name = info.config_name = None
    return Dataset(
        dataset.data,
        info=info,
        split=dataset.split,
        indices_table=dataset._indices,
        fingerprint=dataset._fingerprint,
    )


def _ray(address: str | None) -> Any:
    try:
        import ray
        import ray.data
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
