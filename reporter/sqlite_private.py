"""Open a SQLite database that holds reports: private to its owner, durable on commit."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

__all__ = ["open_private_db"]


def open_private_db(path: Path, schema: str) -> sqlite3.Connection:
    """Create (mode 0600) or open ``path``, in WAL mode with full sync, and apply ``schema``.

    Reports may be TLP:AMBER or RED, so the file (and its -wal, which SQLite
    gives the same mode) is readable by its owner only. ``synchronous=FULL``:
    a report acknowledged as stored survives a power cut, not just a crash.
    Autocommit mode (``isolation_level=None``); callers open transactions
    explicitly and serialise access with their own lock.
    """
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    db = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(schema)
    return db
