"""Load a dataset from wherever users keep it, and save results, with errors that say what to do."""

from __future__ import annotations

import logging
from pathlib import Path

from datasets import Dataset, DatasetDict, load_dataset, load_from_disk

from difficulty_curation.errors import ConfigError, CurationError

logger = logging.getLogger(__name__)

#: File extensions `load_source` reads, and the datasets builder for each.
FILE_BUILDERS = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv"}


def load_source(source: str | Path, *, split: str | None = None) -> Dataset | DatasetDict:
    """Load a `save_to_disk` folder, a parquet/jsonl/json/csv file or folder, or a Hub dataset id.

    With `split`, return that split as a `Dataset`; otherwise a `Dataset` for single-split
    folders saved with `save_to_disk`, and a `DatasetDict` for everything else.
    """
    path = Path(source).expanduser()
    if path.exists():
        dataset = _load_local(path)
    elif _looks_like_path(str(source)):
        raise ConfigError(f"source {str(source)!r} does not exist; pass an existing file or folder, or a Hub id.")
    else:
        try:
            dataset = load_dataset(str(source))
        except Exception as error:  # network, auth, missing repo: report and stop
            raise CurationError(f"could not load {str(source)!r} from the Hub: {error}") from None
    return _select_split(dataset, split, str(source))


def save_dataset(dataset: Dataset | DatasetDict, out: str | Path) -> Path:
    """`save_to_disk` into `out`, refusing to write over a file."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output {str(out)!r} is a file; pass a folder path for --out.")
    dataset.save_to_disk(str(out))
    return out


def _load_local(path: Path) -> Dataset | DatasetDict:
    if path.is_dir() and ((path / "dataset_dict.json").exists() or (path / "state.json").exists()):
        return load_from_disk(str(path))
    if path.is_file():
        builder = FILE_BUILDERS.get(path.suffix.lower())
        if builder is None:
            raise ConfigError(
                f"cannot read {str(path)!r}: unknown file type {path.suffix!r}; "
                f"use one of {', '.join(FILE_BUILDERS)} or a save_to_disk folder."
            )
        return load_dataset(builder, data_files=str(path))
    files = [p for p in path.iterdir() if p.suffix.lower() in FILE_BUILDERS]
    if not files:
        raise ConfigError(
            f"folder {str(path)!r} holds no dataset: expected a save_to_disk folder or "
            f"{', '.join(FILE_BUILDERS)} files."
        )
    return load_dataset(str(path))


def _select_split(dataset: Dataset | DatasetDict, split: str | None, source: str) -> Dataset | DatasetDict:
    if split is None:
        return dataset
    if isinstance(dataset, Dataset):
        return dataset
    if split not in dataset:
        raise ConfigError(f"split {split!r} is not in {source!r}; available splits: {', '.join(dataset)}.")
    return dataset[split]


def _looks_like_path(source: str) -> bool:
    return source.startswith((".", "/", "~")) or source.count("/") > 1 or Path(source).suffix.lower() in FILE_BUILDERS
