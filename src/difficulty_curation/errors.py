"""Every exception class of difficulty-curation, in one place.

All derive from `CurationError`, so `except CurationError` catches every error this package raises
on purpose; each also derives from the built-in a caller might already catch (`ValueError` for a bad
option, `KeyError` for a missing column, `ImportError` for a missing dependency).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from pathlib import Path

#: Library arguments whose `curate` flag is not the argument's name with dashes.
RENAMED_FLAGS = {"num_train_epochs": "--epochs"}


def cli_flag(argument: str) -> str:
    """The `curate` flag of a library argument: `answer_column` -> `--answer-column`, `num_train_epochs` -> `--epochs`.

    The one mapping from argument names to flags: errors name the argument and add its flag with
    this, and the CLI's generated options (the training options) are named by it.
    """
    return RENAMED_FLAGS.get(argument, "--" + argument.replace("_", "-"))


class CurationError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(CurationError, ValueError):
    """An option has a bad value (unknown verifier or backend, num_rollouts < 1, ...)."""


class ColumnNotFoundError(CurationError, KeyError):
    """A column named in the options is not in the dataset."""

    def __init__(self, option: str, column: str, available: Iterable[str], *, advice: str | None = None) -> None:
        self.option = option
        self.column = column
        self.available = sorted(available)
        if advice is None:  # name the option as the library and the CLI spell it
            advice = f"Pass {option}=<one of these> ({cli_flag(option)})" + (
                " or None ('none') for text-only rows." if option == "image_column" else "."
            )
        super().__init__(
            f"{option}={column!r} is not a column of the dataset; "
            f"available columns: {', '.join(self.available) or '(none)'}. {advice}"
        )

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0])


class RowError(CurationError):
    """One row cannot be scored (missing image, empty prompt, ...). Recorded, never raised past the scorer."""

    def __init__(self, column: str, reason: str) -> None:
        self.column = column
        self.reason = reason
        super().__init__(f"{column}: {reason}")


class RowFailedError(CurationError):
    """A row could not be scored and the run was asked to stop at the first such row (`fail_fast`)."""


class EngineError(CurationError, RuntimeError):
    """The engine or endpoint failed in a way that is not one row's fault (a refused API key, a server
    that is down, out of memory, an engine that answers the wrong number of requests): the run stops,
    and everything finished so far is kept.

    `completed_requests` maps the position of each request the engine finished before failing to
    its rollouts, so the caller can keep them too.
    """

    def __init__(self, message: str, completed_requests: dict[int, list[str]] | None = None) -> None:
        super().__init__(message)
        self.completed_requests = completed_requests or {}


class ModelLoadError(CurationError):
    """The scoring model or its processor could not be loaded."""


class BackendUnavailableError(CurationError, ImportError):
    """A backend's optional dependency is not installed."""


class MissingDependencyError(BackendUnavailableError, ConfigError):
    """An optional dependency a step needs is not installed (see `require`).

    A `ConfigError` too: asking for a step whose extra is not installed is an option the user chose.
    """


def missing_dependency(package: str, extra: str, purpose: str, *, hint: str = "") -> MissingDependencyError:
    """The one message for a missing optional dependency: what needs it and the pip command."""
    message = f"{purpose} needs {package}, which is not installed: pip install 'difficulty-curation[{extra}]'"
    return MissingDependencyError(message + (f" ({hint})." if hint else "."))


def require(module: str, extra: str, purpose: str, *, package: str | None = None, hint: str = "") -> None:
    """Raise `MissingDependencyError` unless `module` can be imported (without importing it).

    Example: `require("ray", "ray", "--ray")` before any work starts.
    """
    if importlib.util.find_spec(module) is None:
        raise missing_dependency(package or module, extra, purpose, hint=hint)


class TrainingDivergedError(CurationError):
    """Training ended with a loss or weights that are not finite numbers: nothing is saved."""


class RunStateError(CurationError):
    """The run folder cannot be used as it is (other settings, damaged state, not finished)."""


class RunLockedError(CurationError):
    """Another process is using the run folder."""

    def __init__(self, folder: Path, pid: str) -> None:
        self.folder = folder
        self.pid = pid
        super().__init__(
            f"{str(folder)!r} is in use by another curate process (PID {pid}); wait for it to finish "
            "or stop it, then run the same command again."
        )


class RolloutCacheError(CurationError):
    """The rollout cache file is unreadable or corrupt."""


class EndpointError(EngineError):
    """The endpoint refused the key, is unreachable, or kept failing after every retry: the run stops."""


class PushError(CurationError):
    """A push to the Hub was refused: no token, a repo that already holds files, access denied, ..."""


class HubUnavailableError(PushError, ConnectionError):
    """The Hub could not be reached, or kept answering 429/5xx, after every retry."""
