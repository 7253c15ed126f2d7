"""A durable, verifier-independent store of sampled rollouts.

Keyed by (model id + revision, backend, sampling options, engine options that can change tokens,
hash of everything the engine sees for the row: messages and image pixels), so the same rollouts serve any verifier or threshold:
re-verifying or re-bucketing never generates again. Each write is one SQLite transaction,
committed before the scorer moves on, so a crash never loses a finished rollout.

A row's rollouts are stored as a JSON list of texts, or, when their finish reasons are known, as
`{"texts": [...], "finish_reasons": [...]}`; caches written before finish reasons were recorded
hold only lists, read back as completions whose finish reason is not known (`answers.Completion`).
"""

from __future__ import annotations

import errno
import hashlib
import json
import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from difficulty_curation.answers import Completion, finish_reason
from difficulty_curation.config import ScoringConfig
from difficulty_curation.errors import RolloutCacheError

#: Bumped whenever the same settings would draw other rollouts (2: rollout `j` seeded `row_seed + j`,
#: `engines.sampling`), so rollouts drawn before are never mixed with new ones.
ROLLOUT_KEY_VERSION = 2


def rollout_key(config: ScoringConfig, content_hash: str) -> str:
    """The cache key of one row's rollouts: generation settings + content + `ROLLOUT_KEY_VERSION`, never the verifier.

    Without `adaptive`, never k either: rollout j of a row is the same draw whatever k, so the entry
    holds the longest prefix drawn so far and serves any k up to its length (a `curate plan` pilot
    at k=32 serves the full run at k=8). An adaptive entry depends on where the verifier stopped the
    row, so its key keeps k (a rescore with another verifier reads exactly what was drawn).
    """
    identity = {**config.rollout_identity(), "content": content_hash, "key_version": ROLLOUT_KEY_VERSION}
    if not config.adaptive:
        del identity["num_rollouts"]
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def draws_identity(config: ScoringConfig) -> str:
    """Which draws `config` samples, whatever its k and adaptive: runs with the same identity share rollouts."""
    return rollout_key(config.replace(adaptive=False), "")


class RolloutCache:
    """Rollouts by key in one SQLite file (WAL, synchronous commits)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._connection = sqlite3.connect(self.path, timeout=60)
            self._connection.execute("PRAGMA journal_mode=WAL")
            self._connection.execute("PRAGMA synchronous=FULL")
            self._connection.execute(
                "CREATE TABLE IF NOT EXISTS rollouts (key TEXT PRIMARY KEY, rollouts TEXT NOT NULL)"
            )
            status = self._connection.execute("PRAGMA quick_check").fetchone()[0]
        except sqlite3.DatabaseError as error:
            raise RolloutCacheError(
                f"rollout cache {str(self.path)!r} is unreadable ({error}); move it away to start a fresh cache."
            ) from None
        if status != "ok":
            raise RolloutCacheError(
                f"rollout cache {str(self.path)!r} is corrupt ({status}); move it away to start fresh."
            )

    def get_many(self, keys: Iterable[str]) -> dict[str, list[str]]:
        """The cached rollouts (`Completion`s, with their finish reasons) for whichever of `keys` are present."""
        wanted = list(dict.fromkeys(keys))
        found: dict[str, list[str]] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            placeholders = ",".join("?" * len(chunk))
            rows = self._connection.execute(f"SELECT key, rollouts FROM rollouts WHERE key IN ({placeholders})", chunk)
            found.update((key, _completions(json.loads(value))) for key, value in rows)
        return found

    def put_many(self, items: Mapping[str, list[str]]) -> None:
        """Store rollouts durably (one committed transaction); an entry is never replaced by a shorter one."""
        existing = self.get_many(items)
        items = {key: value for key, value in items.items() if len(existing.get(key, ())) <= len(value)}
        if not items:
            return
        try:
            with self._connection:
                self._connection.executemany(
                    "INSERT OR REPLACE INTO rollouts (key, rollouts) VALUES (?, ?)",
                    [(key, json.dumps(_stored(value))) for key, value in items.items()],
                )
        except sqlite3.OperationalError as error:
            if getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "full" in str(error):
                raise OSError(errno.ENOSPC, "No space left on device", str(self.path)) from None
            raise

    def __len__(self) -> int:
        return self._connection.execute("SELECT COUNT(*) FROM rollouts").fetchone()[0]

    def close(self) -> None:
        """Close the database."""
        self._connection.close()


def _stored(completions: list[str]) -> list[str] | dict[str, list[Any]]:
    """What one row's rollouts are stored as: a list of texts, with their finish reasons where any is known."""
    reasons = [finish_reason(completion) for completion in completions]
    texts = [str(completion) for completion in completions]
    if all(reason is None for reason in reasons):
        return texts
    return {"texts": texts, "finish_reasons": reasons}


def _completions(stored: Any) -> list[Completion]:
    """The inverse of `_stored` (a plain list: finish reasons not known)."""
    if isinstance(stored, dict):
        return [Completion(text, reason) for text, reason in zip(stored["texts"], stored["finish_reasons"])]
    return [Completion(text) for text in stored]


def copy_cache(source: str | Path, destination: str | Path) -> None:
    """Copy a rollout cache with SQLite's backup API: consistent even with a write-ahead log beside it."""
    try:
        reader, writer = sqlite3.connect(source), sqlite3.connect(destination)
        try:
            reader.backup(writer)
        finally:
            reader.close()
            writer.close()
    except sqlite3.DatabaseError as error:
        raise RolloutCacheError(f"could not copy rollout cache {str(source)!r} ({error}).") from None
