"""Load a dataset from wherever users keep it, and save results, with errors that say what to do."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from datasets import Dataset, DatasetDict, load_dataset, load_from_disk

from difficulty_curation.errors import ConfigError, CurationError
from difficulty_curation.outputs import RUN_STATE_DIR, check_output, write_aside
from difficulty_curation.redact import get_logger

__all__ = ["FILE_BUILDERS", "RUN_STATE_DIR", "check_output", "load_source", "save_dataset"]

logger = get_logger(__name__)

#: File extensions `load_source` reads, and the datasets builder for each.
FILE_BUILDERS = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv"}


def load_source(source: str | Path, *, split: str | None = None) -> Dataset | DatasetDict:
    """Load a `save_to_disk` folder, a parquet/jsonl/json/csv file or folder, or a Hub dataset id.

    With `split`, return that split as a `Dataset`; otherwise a `Dataset` for single-split
    folders saved with `save_to_disk`, and a `DatasetDict` for everything else. A Hub dataset with
    several configs (what `curate push` publishes) is read as `ID:CONFIG`, e.g. `my-org/digits:medium`.
    """
    path = Path(source).expanduser()
    if path.exists():
        dataset = _load_local(path)
    elif looks_like_path(str(source)):
        raise ConfigError(f"source {str(source)!r} does not exist; pass an existing file or folder, or a Hub id.")
    else:
        dataset = _load_hub(str(source))
    return _select_split(dataset, split, str(source))


def _load_hub(source: str) -> DatasetDict:
    """`load_dataset` on a Hub id, with `ID:CONFIG` picking a config; a missing config lists the configs."""
    from datasets import get_dataset_config_names

    repo_id, _, config = source.partition(":")
    try:
        return load_dataset(repo_id, config or None)
    except ValueError as error:
        if config or "config name is missing" not in str(error).lower():
            raise CurationError(f"could not load {source!r} from the Hub: {_first_line(error)}") from None
        names = get_dataset_config_names(repo_id)
    except Exception as error:  # network, auth, missing repo: report and stop
        raise CurationError(f"could not load {source!r} from the Hub: {_first_line(error)}") from None
    raise ConfigError(
        f"{source!r} on the Hub has several configs ({', '.join(names)}); pick one as {repo_id}:CONFIG, "
        f"e.g. {repo_id}:{names[0]}."
    )


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def save_dataset(
    dataset: Dataset | DatasetDict,
    out: str | Path,
    *,
    overwrite: bool = False,
    inputs: Iterable[str | Path] = (),
) -> Path:
    """`save_to_disk` into `out` (see `outputs.check_output`, which refuses any of `inputs`): saved aside, then
    swapped in whole.

    A save that fails half-way (full disk, Ctrl-C) leaves `out` as it was. A split without rows is saved
    as one empty shard, so it loads back as a 0-row split with its features.
    """
    with write_aside(out, overwrite=overwrite, inputs=inputs) as staging:
        dataset.save_to_disk(str(staging), num_shards=_one_shard_if_empty(dataset))
    return Path(out)


def _one_shard_if_empty(dataset: Dataset | DatasetDict) -> int | dict[str, int] | None:
    """`save_to_disk` gives a split whose table has no rows (`select([])`) no shard at all, and
    `load_from_disk` then fails on it (`IndexError`): ask for one shard there, leave the rest to datasets."""
    if isinstance(dataset, Dataset):
        return 1 if len(dataset.data) == 0 else None
    return {name: 1 for name, part in dataset.items() if len(part.data) == 0} or None


def _load_local(path: Path) -> Dataset | DatasetDict:
    if path.is_dir() and ((path / "dataset_dict.json").exists() or (path / "state.json").exists()):
        try:
            return load_from_disk(str(path))
        except Exception as error:  # a damaged arrow or json file: datasets raises many kinds
            raise CurationError(
                f"could not read the dataset in {str(path)!r} ({type(error).__name__}: {error}): it is damaged "
                "or has an empty split; save it again (a run folder: run `curate score` again)."
            ) from None
    if path.is_dir() and (path / RUN_STATE_DIR / "run.json").exists():
        raise ConfigError(f"the run in {str(path)!r} is not finished; run `curate score` again to finish it.")
    if path.is_file():
        builder = FILE_BUILDERS.get(path.suffix.lower())
        if builder is None:
            raise ConfigError(
                f"cannot read {str(path)!r}: unknown file type {path.suffix!r}; "
                f"use one of {', '.join(FILE_BUILDERS)} or a save_to_disk folder."
            )
        return _load_files(path, builder, data_files=str(path))
    files = [p for p in path.iterdir() if p.suffix.lower() in FILE_BUILDERS]
    if not files:
        raise ConfigError(
            f"folder {str(path)!r} holds no dataset: expected a save_to_disk folder or "
            f"{', '.join(FILE_BUILDERS)} files."
        )
    return _load_files(path, str(path))


def _load_files(path: Path, *args: str, **kwargs: str) -> DatasetDict:
    """`load_dataset` on local files, saying which split is empty (datasets cannot load one)."""
    try:
        return load_dataset(*args, **kwargs)
    except ValueError as error:
        empty = re.fullmatch(r'Instruction "(.+)" corresponds to no data!', str(error))
        if empty is None:
            raise
        raise ConfigError(
            f"{str(path)!r} has no rows in split {empty.group(1)!r}; add rows or remove its empty file."
        ) from None


def _select_split(dataset: Dataset | DatasetDict, split: str | None, source: str) -> Dataset | DatasetDict:
    if split is None:
        return dataset
    if isinstance(dataset, Dataset):  # one split saved alone: answer to its own name, and to "train"
        if split not in ("train", str(dataset.split)):
            raise ConfigError(
                f"split {split!r} is not in {source!r}: it holds a single split ({dataset.split or 'train'}); "
                "drop --split."
            )
        return dataset
    if split not in dataset:
        raise ConfigError(f"split {split!r} is not in {source!r}; available splits: {', '.join(dataset)}.")
    return dataset[split]


def looks_like_path(source: str) -> bool:
    """Whether `source` reads as a local path rather than a Hub id (`./x`, `/x`, `a/b/c`, `x.parquet`)."""
    return (
        source.startswith((".", "/", "~"))
        or source.endswith("/")  # a folder, as the shell completes it (`stats scroed/`)
        or source.count("/") > 1
        or Path(source).suffix.lower() in FILE_BUILDERS
    )


def scored_folder(source: str | Path) -> Path:
    """Where `curate score SOURCE` writes without `--out`: `<name>-scored` in the current folder.

    `data/train.parquet` -> `train-scored`, `my-org/digits` -> `digits-scored`, `runs/` -> `runs-scored`.
    """
    return Path(f"{Path(str(source).rstrip('/')).stem or 'dataset'}-scored")
