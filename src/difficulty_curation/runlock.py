"""One owner per run folder: an OS-level lock that dies with the process that holds it.

`fcntl.flock` on `DIR/.curate/lock`: the kernel drops the lock when its holder exits, however it
exits (SIGKILL, OOM, power loss), so a crashed run never blocks its own resume, and there is no
stale lock file to clean up by hand. The file holds the holder's PID, for the error message only.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any

from difficulty_curation.errors import RunLockedError

LOCK_FILE = "lock"


class RunLock:
    """Hold the lock of the run folder whose state directory is `state_dir` (a context manager)."""

    def __init__(self, state_dir: str | Path) -> None:
        self.state_dir = Path(state_dir)
        self._handle: Any = None

    def acquire(self) -> RunLock:
        """Take the lock or raise `RunLockedError` naming the holder's PID."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        handle = open(self.state_dir / LOCK_FILE, "a+")  # noqa: SIM115 - held open for the lock's lifetime
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            pid = handle.read().strip() or "unknown"
            handle.close()
            raise RunLockedError(self.state_dir.parent, pid) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._handle = handle
        return self

    def release(self) -> None:
        """Give the lock back (closing the file drops it)."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *_: Any) -> None:
        self.release()
