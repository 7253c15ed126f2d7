"""Durable scoring runs in a folder: resume after any crash, never redo or lose a finished row.

Layout of a run folder `DIR`::

    DIR/.curate/lock              held (flock) by the one process working on the run; see `RunLock`
    DIR/.curate/run.json          what the run is (scoring config, splits and sizes, batch size)
    DIR/.curate/manifest.json     which batches are finished: each shard's size, sha256, rows' fingerprint
    DIR/.curate/shards/*.parquet  the score columns of one finished batch each (batch + fingerprint in metadata)
    DIR/.curate/rollouts.sqlite   every generated rollout (see `RolloutCache`), verifier-independent
    DIR/dataset_dict.json, DIR/<split>/   the finished dataset (`datasets.load_from_disk(DIR)`)

Batches are fixed by the batch size and the input order, and each generate call is seeded from
its batch's content, so a resumed run produces exactly what an uninterrupted one would. Every file
is written to a temporary name, synced and renamed into place. Shards are checked against the
manifest on resume; a damaged shard is dropped and its batch redone from the rollout cache, and a
batch whose rows changed since it was scored (`BatchInputs`) is scored again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq
from datasets import Dataset, DatasetDict, concatenate_datasets, load_from_disk

from difficulty_curation.config import DEFAULT_BATCH_SIZE, ScoringConfig
from difficulty_curation.errors import ConfigError, RowFailedError, RunStateError
from difficulty_curation.outputs import DATASET_FILES, MARKER_FILE, check_output, swap_entries, write_aside
from difficulty_curation.progress import RolloutProgress
from difficulty_curation.provenance import attach_provenance, scoring_provenance, with_finish_counts
from difficulty_curation.redact import get_logger
from difficulty_curation.rollout_cache import RolloutCache, copy_cache
from difficulty_curation.runlock import RunLock
from difficulty_curation.schema import (
    ALL_SCORE_COLUMNS,
    replace_image_features,
    score_features,
    score_table,
    undecoded_images,
)
from difficulty_curation.scoring import DifficultyScorer
from difficulty_curation.splits import as_splits, first_split
from difficulty_curation.stats import scoring_warnings, summarize
from difficulty_curation.verifiers import verifier_name
from difficulty_curation.version import __version__

if TYPE_CHECKING:
    from difficulty_curation.runners.distributed import RayOptions

logger = get_logger(__name__)

STATE_DIR = ".curate"
#: run.json fields that may differ on resume without changing any generated rollout. The source is
#: compared by content (each batch's `BatchInputs` fingerprint), not by how its path is spelled.
#: An endpoint that moved to another host or port still serves the same model.
_RUNTIME_FIELDS = {"toolkit_version", "source", "api_base"}
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

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "scoring": self.scoring,
            "splits": self.splits,
            "batch_size": self.batch_size,
            "source": self.source,
            "toolkit_version": self.toolkit_version,
        }


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

    Raises:
        EngineError: the engine or endpoint failed in a way that is not a row's fault; what was
            finished is kept, and the same call resumes once the cause is fixed.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}.")
    splits = as_splits(dataset)
    for part in splits.values():
        scorer.check_columns(part.column_names)
    if not any(len(part) for part in splits.values()):
        raise ConfigError(
            f"the dataset to score has no rows (splits: {', '.join(splits) or 'none'}); "
            "pass a source or --split that holds rows."
        )
    spec = RunSpec(
        scoring=scorer.config.to_dict(),
        splits={name: len(part) for name, part in splits.items()},
        batch_size=batch_size,
        source=source,
    )
    run = RunFolder.open(out_dir, spec, overwrite=overwrite)
    try:
        if retry_failed:
            run.forget_failed_batches()
        return _score_into(run, splits, dataset, scorer, source=source, progress=progress, fail_fast=fail_fast, ray=ray)
    finally:
        run.close()


def _score_into(
    run: RunFolder,
    splits: dict[str, Dataset],
    dataset: Dataset | DatasetDict,
    scorer: DifficultyScorer,
    *,
    source: str | None,
    progress: bool,
    fail_fast: bool,
    ray: RayOptions | None,
) -> Dataset | DatasetDict:
    """Score every batch of `splits` that `run` has not finished for these very rows, then assemble."""
    batch_size = run.spec.batch_size
    read_columns = scorer.config.columns.names
    readables = {name: undecoded_images(part, scorer.config.image_column) for name, part in splits.items()}
    inputs = {name: BatchInputs(readable, read_columns) for name, readable in readables.items()}
    todos: dict[str, list[tuple[int, int, int]]] = {name: [] for name in splits}
    changed = 0
    for name, part in splits.items():
        for index, (start, stop) in enumerate(_batches(len(part), batch_size)):
            if run.is_finished(name, index):
                if run.scored_from(name, index) == inputs[name].fingerprint(start, stop):
                    continue
                changed += 1
            todos[name].append((index, start, stop))
    if changed:
        logger.warning(
            "%d finished batches were scored from other rows than the source holds now (edited, relabelled "
            "or reordered rows); scoring them again, with cached rollouts for every unchanged prompt",
            changed,
        )
    cache = RolloutCache(run.state / "rollouts.sqlite")
    total = sum(run.spec.splits.values())
    remaining = sum(stop - start for todo in todos.values() for _, start, stop in todo)
    if remaining and ray is None:
        _ = scorer.engine  # load the model before the clock starts: rates and ETA count generation only
    bar = RolloutProgress(total, enabled=progress, initial_rows=total - remaining)
    try:
        if ray is not None:
            _score_on_ray(run, scorer, readables, read_columns, inputs, todos, cache, bar, ray, fail_fast=fail_fast)
            return _finish(run, dataset, scorer, source)
        scorer = scorer.for_run(on_batch=bar.update, rollout_cache=cache, fail_fast=fail_fast)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prepare") as preparer:
            for name, todo in todos.items():
                readable = readables[name]
                # Prepare batch i+1 (image decoding, resizing, hashing) while batch i generates.
                upcoming = preparer.submit(scorer.prepare, readable[todo[0][1] : todo[0][2]]) if todo else None
                for position, (batch_index, start, stop) in enumerate(todo):
                    prepared = upcoming.result()
                    if position + 1 < len(todo):
                        _, next_start, next_stop = todo[position + 1]
                        upcoming = preparer.submit(scorer.prepare, readable[next_start:next_stop])
                    columns = scorer.finish(prepared, indices=range(start, stop))
                    table = score_table(columns, scorer.config)
                    run.write_shard(name, batch_index, start, stop, table, inputs[name].fingerprint(start, stop))
    finally:
        bar.close()
        cache.close()
    return _finish(run, dataset, scorer, source)


def _finish(run: RunFolder, dataset: Dataset | DatasetDict, scorer: DifficultyScorer, source: str | None) -> Any:
    scored = run.assemble(dataset, scoring_provenance(scorer, source=source))
    for warning in scoring_warnings(summarize(scored)):
        logger.warning("%s: %s", run.root, warning)
    return scored


def _score_on_ray(
    run: RunFolder,
    scorer: DifficultyScorer,
    readables: dict[str, Dataset],
    read_columns: list[str],
    inputs: dict[str, BatchInputs],
    todos: dict[str, list[tuple[int, int, int]]],
    cache: RolloutCache,
    bar: RolloutProgress,
    options: RayOptions,
    *,
    fail_fast: bool,
) -> None:
    """The batches of `todos` on Ray workers; each is recorded here, on the driver, as it lands."""
    from difficulty_curation.runners.distributed import score_batches_on_ray

    tables = {name: readable.select_columns(read_columns).with_format("arrow") for name, readable in readables.items()}
    batches = (
        ((name, index, start, stop), tables[name][start:stop])
        for name, todo in todos.items()
        for index, start, stop in todo
    )
    for (name, index, start, stop), columns, rollouts, report in score_batches_on_ray(scorer, batches, options):
        cache.put_many(rollouts)  # before the shard: a crash between the two never loses a rollout
        if fail_fast:
            failed = next((position for position, error in enumerate(columns["difficulty_error"]) if error), None)
            if failed is not None:
                error = columns["difficulty_error"][failed]
                raise RowFailedError(
                    f"row {start + failed}: {error} (fail_fast is on; turn it off to record and go on)"
                )
        table = score_table(columns, scorer.config)
        run.write_shard(name, index, start, stop, table, inputs[name].fingerprint(start, stop))
        bar.update(report)


class BatchInputs:
    """Fingerprints of a split's batches: a hash of every value the scorer reads from their rows.

    Prompt, answer and raw image values (bytes or path, undecoded), so a finished batch is trusted
    on resume only if its rows are the very rows it was scored from: fixed labels, edited prompts
    or reshuffled rows are noticed, whatever the source's path is called.
    """

    def __init__(self, readable: Dataset, columns: list[str]) -> None:
        self._rows = readable.select_columns(columns).with_format("arrow")

    def fingerprint(self, start: int, stop: int) -> str:
        """The fingerprint of rows `start:stop`."""
        from datasets.fingerprint import Hasher

        return Hasher.hash(self._rows[start:stop].to_pydict())


def rescore_dir(
    run_dir: str | Path,
    *,
    verifier: Any = None,
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
        check_output(target, overwrite=overwrite)
    state = run_dir / STATE_DIR
    with RunLock(state):
        finished = RunFolder.load_finished(run_dir)
        for leftover in [*state.glob("rescore-*"), *state.glob("replaced-*")]:  # from a rescore that died
            shutil.rmtree(leftover, ignore_errors=True)
        changes: dict[str, Any] = {}
        if verifier is not None:
            changes["verifier"] = verifier_name(verifier)
        if correct_threshold is not None:
            changes["correct_threshold"] = correct_threshold
        if truncated is not None:
            changes["truncated"] = truncated
        if answer_extractor is not None:  # another extractor drops the run's pattern unless one is given
            changes.update(answer_extractor=answer_extractor, answer_pattern=answer_pattern)
        elif answer_pattern is not None:
            changes.update(answer_extractor="regex", answer_pattern=answer_pattern)
        config = ScoringConfig.from_dict(spec.scoring).replace(**changes)
        new_scorer = DifficultyScorer(config, verifier=verifier if callable(verifier) else None)
        new_scorer.engine = _CacheOnlyEngine()
        if target is None:
            staging = Path(tempfile.mkdtemp(prefix="rescore-", dir=state))
            try:
                _rescore_into(staging, state, finished, new_scorer, spec, progress=progress, link_cache=True)
                _swap_state(staging, run_dir)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        else:
            with write_aside(target, overwrite=overwrite) as staging:
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
    (staging / STATE_DIR).mkdir()
    if link_cache:  # read the run's own cache in place: nothing is written to it
        os.symlink((state / "rollouts.sqlite").resolve(), staging / STATE_DIR / "rollouts.sqlite")
    else:
        copy_cache(state / "rollouts.sqlite", staging / STATE_DIR / "rollouts.sqlite")
    score_to_dir(
        _drop_scores(finished), scorer, staging, batch_size=spec.batch_size, source=spec.source, progress=progress
    )


def _swap_state(staging: Path, run_dir: Path) -> None:
    """Move a finished staged run's shards, manifest, run.json and dataset over `run_dir`'s."""
    state, new_state = run_dir / STATE_DIR, staging / STATE_DIR
    replaced = Path(tempfile.mkdtemp(prefix="replaced-", dir=state))
    os.replace(state / "shards", replaced / "shards")
    os.replace(new_state / "shards", state / "shards")
    os.replace(new_state / "manifest.json", state / "manifest.json")
    os.replace(new_state / "run.json", state / "run.json")
    shutil.rmtree(replaced, ignore_errors=True)
    swap_entries(staging, run_dir, keep={STATE_DIR}, last=DATASET_FILES)


class _CacheOnlyEngine:
    """Stands in for the model during rescoring: every rollout must come from the cache."""

    def generate(self, requests: Any, num_rollouts: int, *, first_rollout: int = 0) -> list[list[str]]:
        raise RunStateError(
            f"{len(requests)} rows have no cached rollouts, so they cannot be rescored without the model; "
            "run `curate score` on them first."
        )


class RunFolder:
    """The state files of one run folder, read and written safely."""

    def __init__(self, root: Path, spec: RunSpec, manifest: dict[str, dict[str, Any]]) -> None:
        self.root = root
        self.state = root / STATE_DIR
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
        if root.exists() and not root.is_dir():
            raise ConfigError(f"output {str(root)!r} is a file; pass a folder path for --out.")
        state = root / STATE_DIR
        is_run = (state / "run.json").exists()
        if not is_run and root.exists() and any(p.name != STATE_DIR for p in root.iterdir()):
            raise RunStateError(
                f"{str(root)!r} already holds files that are not a scoring run; choose an empty or new folder."
            )
        lock = RunLock(state).acquire()
        try:
            if is_run and overwrite:
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
            _write_json_atomic(state / "run.json", spec.to_dict())
            folder = cls(root, spec, {})
            folder.manifest = folder._load_manifest()
        except BaseException:
            lock.release()
            raise
        folder.lock = lock
        return folder

    def close(self) -> None:
        """Release the folder's lock."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    @staticmethod
    def read_spec(root: str | Path) -> RunSpec:
        """The `RunSpec` of an existing run folder."""
        path = Path(root) / STATE_DIR / "run.json"
        if not path.exists():
            raise RunStateError(f"{str(root)!r} is not a scoring run folder (no {STATE_DIR}/run.json).")
        try:
            return RunSpec(**json.loads(path.read_text()))
        except (json.JSONDecodeError, TypeError) as error:
            raise RunStateError(
                f"{str(path)!r} is damaged ({error}); pass --overwrite to start the run afresh."
            ) from None

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

    def finished_rows(self) -> int:
        """Rows already scored by earlier runs."""
        return sum(entry["rows"] for entry in self.manifest.values())

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
            _write_json_atomic(self.state / "manifest.json", {"shards": self.manifest})
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
        with _atomic_path(path) as temporary:
            pq.write_table(table.replace_schema_metadata(metadata), temporary)
        self.manifest[name] = {**identity, "rows": stop - start, "sha256": _sha256(path)}
        _write_json_atomic(self.state / "manifest.json", {"shards": self.manifest})

    # -- assembly -------------------------------------------------------------------------------------
    def assemble(self, dataset: Dataset | DatasetDict, provenance: dict[str, Any]) -> Dataset | DatasetDict:
        """Join every split with its score shards and save the result, with its provenance, at the root."""
        assembled = {name: self._assemble_split(name, part) for name, part in as_splits(dataset).items()}
        result: Dataset | DatasetDict = assembled["train"] if isinstance(dataset, Dataset) else DatasetDict(assembled)
        attach_provenance(result, with_finish_counts(provenance, result))
        staging = Path(tempfile.mkdtemp(prefix="assemble-", dir=self.state))
        try:
            _save(result, staging)
            swap_entries(staging, self.root, keep={STATE_DIR}, last=DATASET_FILES)
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
        return concatenate_datasets([_drop_scores(part), Dataset(scores)], axis=1)

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
            _write_json_atomic(path, {"shards": intact})
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
    directory = os.open(root, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


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


def _drop_scores(dataset: Dataset | DatasetDict) -> Any:
    names = [c for c in ALL_SCORE_COLUMNS if c in first_split(dataset).column_names]
    return dataset.remove_columns(names) if names else dataset


def _batches(num_rows: int, batch_size: int) -> list[tuple[int, int]]:
    return [(start, min(start + batch_size, num_rows)) for start in range(0, num_rows, batch_size)]


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


class _atomic_path:
    """Yield a temporary path beside `path`; on success fsync it and rename it over `path`."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> str:
        handle, self.temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        os.close(handle)
        return self.temporary

    def __exit__(self, error_type: Any, *_: Any) -> None:
        if error_type is not None:
            Path(self.temporary).unlink(missing_ok=True)
            return
        with open(self.temporary, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(self.temporary, self.path)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def _write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    with _atomic_path(path) as temporary:
        Path(temporary).write_text(json.dumps(payload, indent=1, sort_keys=True))
