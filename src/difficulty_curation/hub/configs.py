"""What a push sends: one `DatasetDict` per bucket config, its shard counts, and the id that names the push."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from difficulty_curation.errors import ConfigError
from difficulty_curation.redact import get_logger
from difficulty_curation.splits import datasets_switched_off

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict

logger = get_logger(__name__)

ALL_CONFIG = "all"


def bucket_configs(splits: DatasetDict, names: list[str]) -> dict[str, DatasetDict]:
    """One DatasetDict per bucket (scored rows only, `stratify`'s definitions) plus `all` (every row).

    Empty splits are left out (`load_dataset` cannot read a split without rows), and so is a bucket
    without rows in any split.
    """
    from datasets import DatasetDict

    from difficulty_curation.transforms import stratify

    with datasets_switched_off("caching"):
        buckets = {split: stratify(part) for split, part in splits.items()}
    candidates = {name: {split: buckets[split][name] for split in splits} for name in names}
    candidates[ALL_CONFIG] = dict(splits)
    configs = {}
    for name, parts in candidates.items():
        kept = {split: part for split, part in parts.items() if len(part)}
        if kept:
            configs[name] = DatasetDict(kept)
        else:
            logger.warning("bucket %r has no rows; it is not published as a config.", name)
    if ALL_CONFIG not in configs:
        raise ConfigError("the dataset has no rows; there is nothing to push.")
    return configs


def num_shards(parts: DatasetDict, max_shard_size: int | str) -> dict[str, int]:
    """Shards per split, from the estimated bytes as `push_to_hub` counts them, so the progress line knows the total."""
    from datasets.utils.py_utils import convert_file_size_to_int

    limit = convert_file_size_to_int(max_shard_size)
    return {split: max(1, int(_estimated_bytes(part) / limit) + 1) for split, part in parts.items()}


def _estimated_bytes(part: Dataset) -> int:
    """The Arrow bytes of the rows in view, plus the files of images stored by path (sized from the first
    1000 rows): what the parquet shards will hold once those images are embedded."""
    import os

    import pyarrow as pa

    table = part.data  # the whole table behind a `select`/`filter` view: scaled to the rows in view
    size = table.nbytes * len(part) // max(len(table), 1)
    sample = part.with_format("arrow")[:1000]
    extra = 0
    for name in _image_columns(part.features):
        cells = sample[name].combine_chunks()
        while pa.types.is_list(cells.type) or pa.types.is_large_list(cells.type):
            cells = cells.flatten()
        for cell in cells.to_pylist():
            if cell and cell.get("bytes") is None and cell.get("path") and os.path.isfile(cell["path"]):
                extra += os.path.getsize(cell["path"])
    return size + (extra * len(part) // len(sample) if len(sample) else 0)


def _image_columns(features: Any) -> list[str]:
    """Columns holding `Image` values, alone or in a list."""
    from datasets import Image

    def holds_image(feature: Any) -> bool:
        inner = getattr(feature, "feature", None)
        return isinstance(feature, Image) or (inner is not None and holds_image(inner))

    return [name for name, feature in features.items() if holds_image(feature)]


def _content_digest(part: Dataset) -> str:
    """A digest of the rows in view (their features and Arrow data), read in batches."""
    digest = hashlib.sha256(json.dumps(part.features.to_dict(), sort_keys=True, default=str).encode())
    for batch in part.with_format("arrow").iter(batch_size=1000):
        for record_batch in batch.to_batches():
            digest.update(record_batch.serialize())
    return digest.hexdigest()


def push_identity(
    provenance: dict[str, Any], splits: DatasetDict, configs: list[str], license: str | None, report: str | None = None
) -> str:
    """Names one push of one dataset, so a re-run can tell its own unfinished push from other content."""
    record = {
        **({"report": report} if report else {}),
        "provenance": provenance,
        "splits": {name: [len(part), _content_digest(part)] for name, part in splits.items()},
        "configs": configs,
        "license": license,
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()[:16]


__all__ = ["ALL_CONFIG", "bucket_configs", "num_shards", "push_identity"]
