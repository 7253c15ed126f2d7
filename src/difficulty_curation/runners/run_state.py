"""A run folder's state on disk: what the run is (`RunSpec`), which batches are finished, their shards.

Layout of a run folder `DIR`::

    DIR/.curate/lock              held (flock) by the one process working on the run; see `RunLock`
    DIR/.curate/run.json          what the run is (scoring config, splits and sizes, batch size)
    DIR/.curate/manifest.json     which batches are finished: each shard's size, sha256, rows' fingerprint
    DIR/.curate/shards/*.parquet  the score columns of one finished batch each (batch + fingerprint in metadata)
    DIR/.curate/rollouts.sqlite   every generated rollout (see `RolloutCache`), verifier-independent
    DIR/dataset_dict.json, DIR/<split>/   the finished dataset (`datasets.load_from_disk(DIR)`)

Every file is written to a temporary name, synced and renamed into place (`outputs.atomic_file`).
Shards are checked against the manifest on open; a damaged shard is dropped and its batch redone
from the rollout cache, and a lost manifest is rebuilt from the shards that say which batch they are.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from datasets import Dataset, DatasetDict, concatenate_datasets, load_from_disk

from difficulty_curation.config import ScoringConfig
from difficulty_curation.errors import ConfigError, RunStateError
from difficulty_curation.outputs import (
    DATASET_FILES,
    MARKER_FILE,
    RUN_STATE_DIR,
    atomic_file,
    refuse_inputs,
    remove_stale_staging,
    swap_entries,
    sync_folder,
)
from difficulty_curation.provenance import attach_provenance, with_finish_counts
from difficulty_curation.redact import get_logger
from difficulty_curation.rollout_cache import draws_identity
from difficulty_curation.runlock import RunLock
from difficulty_curation.schema import ALL_SCORE_COLUMNS, replace_image_features, score_features
from difficulty_curation.splits import as_splits, first_split
from difficulty_curation.version import __version__

logger = get_logger(__name__)

#: run.json fields that may differ on resume without changing any generated rollout. The source is
#: compared by content (each batch's rows' fingerprint), not by how its path is spelled.
#: An endpoint that moved to another host or port still serves the same model.
_RUNTIME_FIELDS = {"toolkit_version", "source", "api_base"}
#: Where `curate plan` leaves its plan in a run folder's state (read back into the full run's provenance).
PLAN_FILE = "plan.json"
#: Parquet metadata key of a shard: which batch it is and the fingerprint of the rows it scored.
SHARD_METADATA_KEY = b"difficulty_curation"


@dataclass(frozen=True)
class RunSpec:
    """What a run folder holds: everything that decides its rows' scores."""

    scoring: dict[str, Any]
    splits: dict[str, int]
    batch_size: int
    source: str | None = None
    toolkit_version: str = __version__
    #: A `curate plan` pilot: the next run in the folder replaces it, keeping its rollouts cached.
    pilot: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        record = {
            "scoring": self.scoring,
            "splits": self.splits,
            "batch_size": self.batch_size,
            "source": self.source,
            "toolkit_version": self.toolkit_version,
        }
        return {**record, "pilot": True} if self.pilot else record


class RunFolder:
    """The state files of one run folder, read and written safely."""

    def __init__(self, root: Path, spec: RunSpec, manifest: dict[str, dict[str, Any]]) -> None:
        self.root = root
        self.state = root / RUN_STATE_DIR
        self.spec = spec
        self.manifest = manifest
        self.lock: RunLock | None = None

    # -- opening ------------------------------------------------------------------------------------
    @classmethod
    def open(cls, root: str | Path, spec: RunSpec, *, overwrite: bool = False) -> RunFolder:
        """Start a run in `root` or resume the one there, refusing other settings.

        Takes the folder's lock (see `RunLock`) until `close()`: a second process gets `RunLockedError`,
        and `overwrite=True` never removes what a live run is writing.
        """
        root = Path(root)
        cls.check_root(root)
        state = root / RUN_STATE_DIR
        is_run = (state / "run.json").exists()
        lock = RunLock(state).acquire()
        try:
            # what a process that died mid-write left; only this run writes these files, and it holds the lock
            stale = remove_stale_staging(state, of=("run.json", "manifest.json"))
            stale += remove_stale_staging(state / "shards")
            if stale:
                logger.info("removed %d half-written files of an interrupted run: %s", len(stale), ", ".join(stale))
            if is_run and (overwrite or cls.read_spec(root).pilot):  # a pilot's rollouts stay in the cache
                _unfinish(root)  # first: from here on every reader sees an unfinished run, not the old data
                shutil.rmtree(state / "shards", ignore_errors=True)
                (state / "manifest.json").unlink(missing_ok=True)
            elif is_run:
                existing = cls.read_spec(root).to_dict()
                existing["scoring"] = {**_option_defaults(), **existing["scoring"]}  # options the run predates
                differences = _differences(existing, spec.to_dict())
                # a run that finished no batch yet (say, it stopped at a setting the model refused) loses nothing
                if differences and any((state / "shards").glob("*.parquet")):
                    raise RunStateError(
                        f"{str(root)!r} holds a run with other settings ({'; '.join(differences)}). "
                        "Use another --out folder, pass --overwrite to start afresh, or `curate rescore` "
                        "to change only the verifier, threshold, answer extractor or truncation policy."
                    )
            (state / "shards").mkdir(parents=True, exist_ok=True)
            _write_json(state / "run.json", spec.to_dict())
            folder = cls(root, spec, {})
            folder.manifest = folder._load_manifest()
        except BaseException:
            lock.release()
            raise
        folder.lock = lock
        return folder

    @staticmethod
    def check_root(root: str | Path, *, inputs: Iterable[str | Path] = ()) -> None:
        """Refuse `root` as a run folder before any work (or model load): a file, a folder holding
        files that are not a scoring run, or one that is, holds or sits in one of `inputs` (the source).

        Raises:
            ConfigError: `root` is a file or would write into an input.
            RunStateError: `root` holds files that are not a scoring run.
        """
        root = Path(root)
        refuse_inputs(root, inputs=inputs)
        if root.exists() and not root.is_dir():
            raise ConfigError(f"output {str(root)!r} is a file; pass a folder path for --out.")
        is_run = (root / RUN_STATE_DIR / "run.json").exists()
        if not is_run and root.exists() and any(p.name != RUN_STATE_DIR for p in root.iterdir()):
            raise RunStateError(
                f"{str(root)!r} already holds files that are not a scoring run; choose an empty or new folder."
            )

    def close(self) -> None:
        """Release the folder's lock."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    @staticmethod
    def read_spec(root: str | Path) -> RunSpec:
        """The `RunSpec` of an existing run folder."""
        path = Path(root) / RUN_STATE_DIR / "run.json"
        if not path.exists():
            raise RunStateError(f"{str(root)!r} is not a scoring run folder (no {RUN_STATE_DIR}/run.json).")
        try:
            return RunSpec(**json.loads(path.read_text()))
        except (json.JSONDecodeError, TypeError) as error:
            raise RunStateError(
                f"{str(path)!r} is damaged ({error}); pass --overwrite to start the run afresh."
            ) from None

    def plan(self, config: ScoringConfig) -> dict[str, Any] | None:
        """What the folder's `curate plan` (`PLAN_FILE`) said, for the provenance: None without a plan, or if it
        was made for other draws (another model, seed or sampling option; k and adaptive are what it plans)."""
        path = self.state / PLAN_FILE
        try:
            plan = json.loads(path.read_text()) if path.exists() else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None
        if not isinstance(plan, dict) or plan.get("draws") != draws_identity(config):
            return None
        return plan.get("summary")

    @staticmethod
    def load_finished(root: str | Path) -> Dataset | DatasetDict:
        """The finished dataset of a run folder, or an error saying how to finish it."""
        root = Path(root)
        if not ((root / "dataset_dict.json").exists() or (root / "state.json").exists()):
            raise RunStateError(f"the run in {str(root)!r} is not finished; run `curate score` again to resume it.")
        return load_from_disk(str(root))

    # -- progress -------------------------------------------------------------------------------------
    def is_finished(self, split: str, batch_index: int) -> bool:
        """Whether that batch's shard is written and intact."""
        return _shard_name(split, batch_index) in self.manifest

    def scored_from(self, split: str, batch_index: int) -> str | None:
        """The fingerprint (`BatchInputs`) of the rows a finished batch was scored from."""
        return self.manifest[_shard_name(split, batch_index)].get("inputs_sha256")

    def forget_failed_batches(self) -> int:
        """Mark every finished batch that holds a failed row as not finished, so it is redone; returns how many.

        The batch's other rows come back from the rollout cache, so only the failed rows generate again.
        """
        forgotten = []
        for name in list(self.manifest):
            errors = pq.read_table(self.state / "shards" / name, columns=["difficulty_error"]).column(0).to_pylist()
            if any(errors):
                forgotten.append(name)
                del self.manifest[name]
        if forgotten:
            _write_json(self.state / "manifest.json", {"shards": self.manifest})
            for name in forgotten:
                (self.state / "shards" / name).unlink(missing_ok=True)
        logger.info("retrying the failed rows of %d batches", len(forgotten))
        return len(forgotten)

    def write_shard(
        self, split: str, batch_index: int, start: int, stop: int, table: pa.Table, inputs_sha256: str
    ) -> None:
        """Write one batch's scores durably, then record it in the manifest.

        The shard carries its batch and the fingerprint of the rows it scored in its own metadata,
        so a lost manifest is rebuilt only from shards that belong to the current rows.
        """
        name = _shard_name(split, batch_index)
        path = self.state / "shards" / name
        identity = {"split": split, "start": start, "stop": stop, "inputs_sha256": inputs_sha256}
        metadata = {**(table.schema.metadata or {}), SHARD_METADATA_KEY: json.dumps(identity).encode()}
        with atomic_file(path) as temporary:
            pq.write_table(table.replace_schema_metadata(metadata), temporary)
        self.manifest[name] = {**identity, "rows": stop - start, "sha256": _sha256(path)}
        _write_json(self.state / "manifest.json", {"shards": self.manifest})

    # -- assembly -------------------------------------------------------------------------------------
    def assemble(self, dataset: Dataset | DatasetDict, provenance: dict[str, Any]) -> Dataset | DatasetDict:
        """Join every split with its score shards and save the result, with its provenance, at the root."""
        assembled = {name: self._assemble_split(name, part) for name, part in as_splits(dataset).items()}
        result: Dataset | DatasetDict = assembled["train"] if isinstance(dataset, Dataset) else DatasetDict(assembled)
        attach_provenance(result, with_finish_counts(provenance, result))
        staging = Path(tempfile.mkdtemp(prefix="assemble-", dir=self.state))
        try:
            _save(result, staging)
            swap_entries(staging, self.root, keep={RUN_STATE_DIR}, last=DATASET_FILES)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return load_from_disk(str(self.root))

    def _assemble_split(self, split: str, part: Dataset) -> Dataset:
        entries = sorted((e for e in self.manifest.values() if e["split"] == split), key=lambda e: e["start"])
        covered = sum(e["rows"] for e in entries)
        if covered != len(part):
            raise RunStateError(f"split {split!r} has {covered} of {len(part)} rows scored; run again to finish it.")
        names = [n for n, e in sorted(self.manifest.items(), key=lambda item: item[1]["start"]) if e["split"] == split]
        schema = score_features(ScoringConfig.from_dict(self.spec.scoring)).arrow_schema
        scores = pa.concat_tables([_conform(_read_scores(self.state / "shards" / name), schema) for name in names])
        return concatenate_datasets([drop_scores(part), Dataset(scores)], axis=1)

    # -- manifest -------------------------------------------------------------------------------------
    def _load_manifest(self) -> dict[str, dict[str, Any]]:
        path = self.state / "manifest.json"
        rewrite = not path.exists()
        try:
            recorded = json.loads(path.read_text())["shards"] if path.exists() else {}
            _check_manifest_shape(recorded)
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as error:
            logger.warning("manifest %s is damaged (%s); rebuilding it from the intact shards", path, error)
            recorded, rewrite = self._entries_from_shards(), True
        intact = {}
        for name, entry in recorded.items():
            problem = self._shard_problem(name, entry)
            if problem is None:
                intact[name] = {**entry, "sha256": entry.get("sha256") or _sha256(self.state / "shards" / name)}
            else:
                logger.warning("shard %s is %s; its batch will be redone from the rollout cache", name, problem)
                (self.state / "shards" / name).unlink(missing_ok=True)
                rewrite = True
        if rewrite:
            _write_json(path, {"shards": intact})
        return intact

    def _shard_problem(self, name: str, entry: dict[str, Any]) -> str | None:
        path = self.state / "shards" / name
        if not path.exists():
            return "missing"
        if entry.get("sha256") not in (None, _sha256(path)):
            return "damaged (checksum mismatch)"
        try:
            rows = pq.read_metadata(path).num_rows
        except Exception as error:  # a truncated or garbled parquet file
            return f"unreadable ({type(error).__name__})"
        if rows != entry.get("rows"):
            return f"incomplete ({rows} of {entry.get('rows')} rows)"
        return None

    def _entries_from_shards(self) -> dict[str, dict[str, Any]]:
        """Manifest entries for the shards that say which batch they are, and are named for it.

        Each keeps the fingerprint of the rows it scored, so the resume checks it against the rows
        of the batch it claims to be (`is_finished`) and scores that batch again if they differ.
        """
        entries = {}
        size = self.spec.batch_size
        for path in sorted((self.state / "shards").glob("*.parquet")):
            identity = _shard_identity(path)
            parsed = _parse_shard_name(path.name)
            if identity is None or parsed is None or parsed[0] not in self.spec.splits:
                logger.warning("ignoring %s: not a shard of this run", path)
                continue
            split, batch_index = parsed
            start = batch_index * size
            stop = min(start + size, self.spec.splits[split])
            if (identity.get("split"), identity.get("start"), identity.get("stop")) != (split, start, stop):
                logger.warning("ignoring %s: it holds another batch than its name says", path)
                continue
            entries[path.name] = {**identity, "rows": stop - start, "sha256": None}
        return entries


def _unfinish(root: Path) -> None:
    """Take away what makes `root` read as a finished dataset (its data stays until the run assembles anew)."""
    for name in DATASET_FILES:
        (root / name).unlink(missing_ok=True)
    (root / MARKER_FILE).unlink(missing_ok=True)
    sync_folder(root)


def _save(dataset: Dataset | DatasetDict, path: Path) -> None:
    """`save_to_disk`, surviving image columns that point at missing files.

    datasets stats every external image path while sizing shards, so one missing file would fail
    the save of a finished run. Then the image columns are saved as their raw `{bytes, path}`
    records instead (cast back with `cast_column(name, Image())`), and a warning says so.
    """
    try:
        dataset.save_to_disk(str(path))
    except FileNotFoundError as error:
        logger.warning(
            "an image file is missing (%s); saving image columns as raw {bytes, path} records "
            "(cast back with dataset.cast_column(name, datasets.Image()))",
            error.filename,
        )
        shutil.rmtree(path, ignore_errors=True)
        _raw_images(dataset).save_to_disk(str(path))


def _raw_images(dataset: Dataset | DatasetDict) -> Any:
    from datasets import Value

    raw = {"bytes": Value("binary"), "path": Value("string")}
    features = first_split(dataset).features
    return dataset.cast(type(features)({name: replace_image_features(f, raw) for name, f in features.items()}))


def drop_scores(dataset: Dataset | DatasetDict) -> Any:
    """`dataset` without the columns an earlier scoring added (a rescore or a resume scores it afresh)."""
    names = [c for c in ALL_SCORE_COLUMNS if c in first_split(dataset).column_names]
    return dataset.remove_columns(names) if names else dataset


def _shard_name(split: str, batch_index: int) -> str:
    return f"{split}-{batch_index:08d}.parquet"


def _parse_shard_name(name: str) -> tuple[str, int] | None:
    split, _, index = name.removesuffix(".parquet").rpartition("-")
    return (split, int(index)) if split and index.isdigit() else None


def _shard_identity(path: Path) -> dict[str, Any] | None:
    """The batch a shard says it scored (its metadata), or None if it is unreadable or says nothing."""
    try:
        metadata = pq.read_schema(path).metadata or {}
        identity = json.loads(metadata[SHARD_METADATA_KEY])
    except Exception:  # a truncated, garbled or foreign file: not a shard we can trust
        return None
    return identity if isinstance(identity, dict) else None


def _read_scores(path: Path) -> pa.Table:
    """A shard's score columns, without our bookkeeping metadata."""
    table = pq.read_table(path)
    metadata = {k: v for k, v in (table.schema.metadata or {}).items() if k != SHARD_METADATA_KEY}
    return table.replace_schema_metadata(metadata)


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """A shard's scores in the run's column schema: columns added since the shard was written (say,
    `num_truncated` in a run folder that predates finish reasons) are null, never guessed."""
    if table.schema.names == schema.names:
        return table
    columns = [
        table.column(field.name) if field.name in table.schema.names else pa.nulls(len(table), field.type)
        for field in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema.with_metadata(table.schema.metadata))


def _check_manifest_shape(recorded: Any) -> None:
    """Raise ValueError unless `recorded` maps shard names to entries with their batch's bounds."""
    if not isinstance(recorded, dict):
        raise ValueError(f"'shards' is a {type(recorded).__name__}, not an object")
    for name, entry in recorded.items():
        if not isinstance(entry, dict) or _parse_shard_name(name) is None:
            raise ValueError(f"entry {name!r} is not a shard entry")
        if not all(isinstance(entry.get(key), int) for key in ("start", "stop", "rows")):
            raise ValueError(f"entry {name!r} lacks its row bounds")
        if not isinstance(entry.get("split"), str):
            raise ValueError(f"entry {name!r} lacks its split")


def _option_defaults() -> dict[str, Any]:
    """Every scoring option's default, as `ScoringConfig.to_dict` writes it (for run folders that predate an option)."""
    defaults = {}
    for item in dataclasses.fields(ScoringConfig):
        if item.default is not dataclasses.MISSING:
            defaults[item.name] = item.default
        elif item.default_factory is not dataclasses.MISSING and item.name != "rollout":
            defaults[item.name] = item.default_factory()
    return defaults


def _differences(existing: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    differences = []
    for key in sorted(set(existing) | set(wanted)):
        if key in _RUNTIME_FIELDS:
            continue
        old, new = existing.get(key), wanted.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            differences += [f"{key}.{d}" for d in _differences(old, new)]
        elif old != new:
            differences.append(f"{key}: {old!r} there, {new!r} now")
    return differences


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    with atomic_file(path) as temporary:
        temporary.write_text(json.dumps(payload, indent=1, sort_keys=True))
