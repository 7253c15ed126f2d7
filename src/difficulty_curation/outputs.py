"""Where results land: refuse an output folder that would lose something, write aside, then swap in whole.

One file is replaced the same way, by `atomic_file`: written beside, synced, renamed over; a file a
user names (`report --out`, `compare --plot`, `stats --plot`) goes through `write_file`, which first
asks `check_output_file`.

One guard for every output, folders and files alike (`check_output`, `check_output_file`):

- never a scoring run, a folder inside one (any ancestor holding a `.curate` state folder) or its
  state folder itself, whatever the spelling (`RUN/.curate/../train`, a symlink);
- never an input of the same command (`inputs=`): the folder or file being read, a folder holding
  it or one inside it, by its real path (symlinks and `..` resolved) or the same file under another name;
- an existing output is replaced only with `--overwrite`;
- every error raised while writing into the hidden staging folder (or temporary file) names the
  user's `--out`, never `.NAME.partial-...`.

Every command that writes a folder (`filter`, `stratify`, `demo --out`, `rescore --out`, `export`,
`sft`, `grpo`, `eval --out`) goes through `write_aside`:

- the work is written into a sibling temporary folder and swapped in with `os.replace` only once it
  is complete, so a kill, a full disk or an error leaves `--out` as it was;
- the finished folder carries `MARKER_FILE`, listing what we wrote: `--overwrite` only ever replaces a
  folder we wrote (or an earlier output of the same kind), never one holding anything else;
- a scoring run (a `.curate` state folder) and the model being trained are never written into;
- `--out` may be a symlink to a folder (the folder it points to is replaced) or an empty mount
  point, which cannot be renamed over: the new entries are moved into it, the marker last.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from difficulty_curation.errors import ConfigError

#: The state folder of a scoring run (see `difficulty_curation.runners`): its rollout cache is never ours to delete.
RUN_STATE_DIR = ".curate"
#: The file every finished output folder carries, listing the entries we wrote (written last).
MARKER_FILE = ".curate-output.json"
#: The files that make a folder a `save_to_disk` dataset (an earlier `filter` or `stratify` output).
DATASET_FILES = ("dataset_dict.json", "state.json")
#: The file types a figure (`--plot`) is written as.
FIGURE_SUFFIXES = (".png", ".svg", ".pdf", ".jpg", ".jpeg")
#: The file types an HTML page (`report --out`) is written as: never a data or state file.
PAGE_SUFFIXES = (".html", ".htm")


def check_output(
    out: str | Path,
    *,
    overwrite: bool = False,
    earlier: Iterable[str] = DATASET_FILES,
    protect: Iterable[str | Path] = (),
    inputs: Iterable[str | Path] = (),
    option: str = "--out",
) -> Path:
    """Refuse an output folder that would lose something; return it as a `Path`.

    Refused: a file; a scoring run, a folder inside one or its state folder; a folder that is, holds
    or sits in one of `inputs` (what this command reads) or `protect` (the model being trained); and
    a non-empty folder, unless `overwrite` and it is one we wrote (our marker, or one of the `earlier`
    files of an older output of the same kind) with nothing else in it. Call it before the work, so
    a refusal costs nothing; `write_aside` checks again.
    """
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{option} {str(out)!r} is a file; pass a folder path.")
    real = out.resolve()
    _refuse_readers_and_runs(out, protect=protect, inputs=inputs, option=option)
    if not out.exists() or not any(out.iterdir()):
        return out
    if not overwrite:
        raise ConfigError(
            f"{option} {str(out)!r} is not empty; pass --overwrite to replace an earlier output, or a new folder."
        )
    foreign = _not_ours(real, tuple(earlier))
    if foreign:
        raise ConfigError(
            f"{option} {str(out)!r} holds {foreign}; refusing to replace it even with --overwrite. "
            f"Pass a new or empty folder for {option}."
        )
    return out


@contextlib.contextmanager
def write_aside(
    out: str | Path,
    *,
    overwrite: bool = False,
    earlier: Iterable[str] = DATASET_FILES,
    protect: Iterable[str | Path] = (),
    inputs: Iterable[str | Path] = (),
    option: str = "--out",
) -> Iterator[Path]:
    """Yield an empty staging folder beside `out`; when the block ends without error, swap it in as `out`.

    The staging folder is removed on any error (or kill: the next run removes nothing of ours but
    never mistakes it for `out`, whose name it does not carry). See the module docstring.

    Example:
        >>> with write_aside("sft-m/", overwrite=True) as folder:  # doctest: +SKIP
        ...     model.save_pretrained(folder)
    """
    earlier, protect, inputs = tuple(earlier), tuple(protect), tuple(inputs)
    guard = {"overwrite": overwrite, "earlier": earlier, "protect": protect, "inputs": inputs, "option": option}
    out = check_output(out, **guard)
    real = out.resolve()
    in_place = real.is_dir() and os.path.ismount(real)  # a mount point cannot be renamed over
    parent = real if in_place else real.parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{real.name}.partial-", dir=parent))
    os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes it 0700; a plain mkdir would honour the umask
    try:
        with _naming(staging, out):
            yield staging
        write_marker(staging)
        if in_place:
            swap_entries(staging, real, keep={staging.name})
        else:
            check_output(out, **guard)  # still so?
            if real.exists():
                replaced = real.parent / f".{real.name}.replaced-{staging.name.rsplit('-', 1)[-1]}"
                os.replace(real, replaced)
                os.replace(staging, real)
                shutil.rmtree(replaced, ignore_errors=True)
            else:
                os.replace(staging, real)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def swap_entries(staging: Path, target: Path, *, keep: Iterable[str] = (), last: Iterable[str] = ()) -> None:
    """Move each entry of `staging` over its namesake in `target`, the `last` ones (and our marker) last.

    Entries named in `keep` are left alone on both sides; every other entry of `target` that
    `staging` lacks is removed, so `target` ends up holding what `staging` held. The `last` entries
    and the marker are taken out first, so a reader never sees a finished folder half-swapped.
    Used where `target` itself cannot be swapped: a mount point, or a run folder whose `.curate` stays.
    """
    keep, order = {*keep}, [*last, MARKER_FILE]
    replaced = Path(tempfile.mkdtemp(prefix=".replaced-", dir=target))
    keep.add(replaced.name)
    try:
        names = {entry.name for entry in staging.iterdir()}
        for entry in sorted(target.iterdir(), key=lambda p: p.name not in order):
            if entry.name not in keep and (entry.name in order or entry.name not in names):
                os.replace(entry, replaced / entry.name)
        for entry in sorted(staging.iterdir(), key=lambda p: order.index(p.name) if p.name in order else -1):
            if entry.name in keep:
                continue
            destination = target / entry.name
            if destination.exists() or destination.is_symlink():
                os.replace(destination, replaced / entry.name)
            os.replace(entry, destination)
    finally:
        shutil.rmtree(replaced, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; when the block ends without error, sync it and rename it over `path`.

    A reader (or a run resumed after a crash) sees the old file or the whole new one, never a part.

    Example:
        >>> with atomic_file("run/.curate/manifest.json") as temporary:  # doctest: +SKIP
        ...     temporary.write_text(json.dumps(manifest))
    """
    path = Path(path)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(handle)
    temporary = Path(name)
    os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes it 0600; a plain open() would honour the umask
    try:
        with _naming(temporary, path):
            yield temporary
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        os.replace(temporary, path)
        sync_folder(path.parent)
    finally:
        temporary.unlink(missing_ok=True)


#: `atomic_file`'s temporary name for `X.ext`: `.X.ext.` + mkstemp's 8 random characters + `.ext`
_STAGING_NAME = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}(?P<suffix>\.[^.]*)?")


def remove_stale_staging(folder: str | Path, *, of: Iterable[str] | None = None) -> list[str]:
    """Delete the temporary files `atomic_file` left in `folder` when a process died mid-write (only those
    of the files named in `of`, when given); returns their names.

    Call it only while holding the lock of every writer of those files (`RunLock`): a live writer's
    temporary file looks the same.
    """
    folder, names = Path(folder), None if of is None else set(of)
    removed = []
    for entry in sorted(folder.iterdir()) if folder.is_dir() else ():
        match = _STAGING_NAME.fullmatch(entry.name)
        if not match or (names is not None and match["name"] not in names):
            continue
        if match["name"].endswith(match["suffix"] or "") and entry.is_file():
            entry.unlink(missing_ok=True)
            removed.append(entry.name)
    return removed


def check_output_file(
    out: str | Path,
    *,
    overwrite: bool = False,
    inputs: Iterable[str | Path] = (),
    suffixes: Iterable[str] = (),
    option: str = "--out",
) -> Path:
    """Refuse an output file that would lose something; return it as a `Path`.

    Refused: a folder (or a path spelled with a trailing `/`); a file type not in `suffixes` (when
    given); a path inside a scoring run (see `check_output`); one of `inputs`, a file inside one of
    them or the same file under another name; and an existing file unless `overwrite`.

    Example:
        >>> check_output_file("report.html", inputs=["scored/"], suffixes=[".html"])  # doctest: +SKIP
    """
    spelled = str(out)
    out = Path(out).expanduser()
    suffixes = tuple(suffixes)
    example = f"{option} {str(out / ('name' + (suffixes[0] if suffixes else '')))!r}"
    if out.is_dir() or spelled.endswith(("/", os.sep)):
        raise ConfigError(f"{option} {spelled!r} is a folder; pass a file path, e.g. {example}.")
    _refuse_readers_and_runs(out, inputs=inputs, option=option)
    if suffixes and out.suffix.lower() not in suffixes:
        raise ConfigError(
            f"{option} {spelled!r}: cannot write a {out.suffix or 'file without a suffix'!s} file here; "
            f"end it with one of {', '.join(suffixes)}."
        )
    if (out.exists() or out.is_symlink()) and not overwrite:
        raise ConfigError(f"{option} {spelled!r} already exists; pass --overwrite to replace it, or a new path.")
    return out


def write_file(
    out: str | Path,
    write: Callable[[Path], object],
    *,
    overwrite: bool = False,
    inputs: Iterable[str | Path] = (),
    suffixes: Iterable[str] = (),
    option: str = "--out",
) -> Path:
    """Check `out` (`check_output_file`), call `write(temporary)`, then swap the file in whole; return `out`.

    `temporary` lies beside `out` and ends with its suffix; a symlinked `out` replaces the file it
    points to. A write that fails leaves `out` as it was.

    Example:
        >>> write_file("report.html", lambda path: path.write_text(html), overwrite=True)  # doctest: +SKIP
    """
    inputs, suffixes = tuple(inputs), tuple(suffixes)
    out = check_output_file(out, overwrite=overwrite, inputs=inputs, suffixes=suffixes, option=option)
    real = out.resolve()
    real.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(real) as temporary, _naming(temporary, out):
        write(temporary)
        check_output_file(out, overwrite=overwrite, inputs=inputs, suffixes=suffixes, option=option)  # still so?
    return out


def sync_folder(folder: str | Path) -> None:
    """fsync `folder` itself, so the renames and removals in it survive a crash."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_marker(folder: Path) -> Path:
    """Record in `folder` that we wrote it, and which entries: the last file of every output."""
    from difficulty_curation.version import __version__

    entries = sorted(entry.name for entry in folder.iterdir() if entry.name != MARKER_FILE)
    marker = folder / MARKER_FILE
    marker.write_text(json.dumps({"written_by": f"difficulty-curation {__version__}", "entries": entries}, indent=1))
    return marker


def is_complete(folder: str | Path) -> bool:
    """Whether `folder` is an output we finished writing (it carries our marker)."""
    return (Path(folder) / MARKER_FILE).is_file()


def _not_ours(folder: Path, earlier: tuple[str, ...]) -> str:
    """What in `folder` we did not write, described; empty if it is all ours."""
    for root, directories, _ in os.walk(folder):
        if RUN_STATE_DIR in directories:
            return f"a scoring run ({str(Path(root) / RUN_STATE_DIR)!r}) that would be lost"
    marker = folder / MARKER_FILE
    if marker.is_file():
        try:
            listed = set(json.loads(marker.read_text())["entries"])
        except (ValueError, KeyError, TypeError):
            return f"a damaged {MARKER_FILE}"
        extra = sorted(entry.name for entry in folder.iterdir() if entry.name not in listed | {MARKER_FILE})
        return f"files difficulty-curation did not write ({', '.join(extra[:3])})" if extra else ""
    if any((folder / name).exists() for name in earlier):
        return ""
    return f"files difficulty-curation did not write (no {MARKER_FILE})"


def refuse_inputs(
    out: str | Path, *, inputs: Iterable[str | Path] = (), protect: Iterable[str | Path] = (), option: str = "--out"
) -> None:
    """Refuse `out` where it is, holds or sits in something this command reads (`inputs`, `protect`), by
    real path (symlinks and `..` resolved) or as the same file under another name; a path that does not
    exist (a Hub id) guards nothing.

    Raises:
        ConfigError: `out` would overwrite or write into an input.
    """
    out = Path(out).expanduser()
    real = out.resolve()
    for path, what in [
        *((p, "which this command reads") for p in inputs),
        *((p, "the model this command reads") for p in protect),
    ]:
        source = Path(path).expanduser()
        if not (source.exists() or source.is_symlink()):
            continue  # a Hub id, or a path this command will report missing
        guarded = source.resolve()
        if real == guarded or guarded in real.parents or real in guarded.parents or _same_file(real, guarded):
            raise ConfigError(
                f"{option} {str(out)!r} would overwrite or write into {str(path)!r}, {what}; "
                f"pass a path outside it for {option}."
            )


def _refuse_readers_and_runs(
    out: Path, *, protect: Iterable[str | Path] = (), inputs: Iterable[str | Path] = (), option: str
) -> None:
    """Refuse `out` where it is, holds or sits in something read (`inputs`, `protect`) or a scoring run."""
    refuse_inputs(out, inputs=inputs, protect=protect, option=option)
    real = out.resolve()
    for folder in (real, *real.parents):
        if folder.name == RUN_STATE_DIR or (folder / RUN_STATE_DIR).exists():
            run = folder.parent if folder.name == RUN_STATE_DIR else folder
            where = "holds a scoring run" if run == real else f"is inside the scoring run {str(run)!r}"
            raise ConfigError(
                f"{option} {str(out)!r} {where} (its scores and rollout cache would be lost); "
                f"pass a path outside it for {option}."
            )


def _same_file(first: Path, second: Path) -> bool:
    """Whether two existing paths are one file (hard links included)."""
    try:
        return first.exists() and second.exists() and os.path.samefile(first, second)
    except OSError:
        return False


@contextlib.contextmanager
def _naming(staging: Path, out: Path) -> Iterator[None]:
    """Say `out` where an error raised while writing `staging` names the hidden staging path (or nothing)."""
    try:
        yield
    except Exception as error:
        hidden, shown = str(staging), str(out)
        error.args = tuple(arg.replace(hidden, shown) if isinstance(arg, str) else arg for arg in error.args)
        if isinstance(error, OSError):
            for attribute in ("filename", "filename2"):
                value = getattr(error, attribute)
                if isinstance(value, str | os.PathLike) and hidden in os.fspath(value):
                    setattr(error, attribute, os.fspath(value).replace(hidden, shown))
            if error.filename is None:  # pyarrow's write errors name no file: name the output
                error.filename = shown
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
