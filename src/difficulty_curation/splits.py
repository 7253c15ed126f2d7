"""One `Dataset` or a `DatasetDict` of splits: the helpers every step uses to accept both."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TypeVar

from datasets import Dataset, DatasetDict

T = TypeVar("T")

#: The split name a lone `Dataset` goes by where a name is needed (run folders, exports, cards).
DEFAULT_SPLIT = "train"


def as_splits(dataset: Dataset | DatasetDict) -> dict[str, Dataset]:
    """Split name -> `Dataset`: a `DatasetDict`'s own splits, or a lone `Dataset` as `train`."""
    return dict(dataset) if isinstance(dataset, DatasetDict) else {DEFAULT_SPLIT: dataset}


def map_splits(function: Callable[[Dataset], Dataset], dataset: Dataset | DatasetDict) -> Dataset | DatasetDict:
    """`function` applied to `dataset`, or to each split of a `DatasetDict` (returning a `DatasetDict`)."""
    if isinstance(dataset, DatasetDict):
        return DatasetDict({name: function(part) for name, part in dataset.items()})
    return function(dataset)


def first_split(dataset: Dataset | DatasetDict) -> Dataset:
    """`dataset`, or the first split of a `DatasetDict` (splits of one scored dataset share columns and info)."""
    return next(iter(dataset.values())) if isinstance(dataset, DatasetDict) else dataset


def one_split_only(dataset: Dataset | DatasetDict, message: str) -> Dataset:
    """`dataset` if it is one split; a `DatasetDict` is refused with `message` (which says what to do).

    Raises:
        ConfigError: `dataset` is a `DatasetDict`.
    """
    from difficulty_curation.errors import ConfigError

    if isinstance(dataset, DatasetDict):
        raise ConfigError(message)
    return dataset


@contextlib.contextmanager
def datasets_switched_off(switch: str) -> Iterator[None]:
    """Turn one of datasets' global switches off inside the block ("caching" or "progress_bars"), then restore it.

    "caching" keeps datasets from writing cache files (into a user's folder, say, while we slice it);
    "progress_bars" hides datasets' own bars while ours runs.
    """
    import datasets

    is_enabled, disable, enable = {
        "caching": (datasets.is_caching_enabled, datasets.disable_caching, datasets.enable_caching),
        "progress_bars": (
            datasets.is_progress_bar_enabled,
            datasets.disable_progress_bars,
            datasets.enable_progress_bars,
        ),
    }[switch]
    was_enabled = is_enabled()
    disable()
    try:
        yield
    finally:
        if was_enabled:
            enable()
