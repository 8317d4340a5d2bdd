"""On SQLite one engine only: an exclusive lock file beside the database."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from sqlalchemy.engine import make_url


class EngineAlreadyRunning(RuntimeError):
    """Another process already runs campaigns on this SQLite database."""


class EngineLock:
    """Held for the life of the engine; the kernel drops it when the process dies (even -9)."""

    def __init__(self, database_url: str) -> None:
        database = make_url(database_url).database
        self.path: Path | None = (
            Path(database).resolve().with_name(Path(database).name + ".engine.lock")
            if database and database != ":memory:"
            else None
        )
        self._fd: int | None = None

    def acquire(self) -> None:
        if self.path is None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise EngineAlreadyRunning(
                f"Another campaignd engine (pid {holder}) already runs campaigns on "
                f"{self.path.with_suffix('').with_suffix('')}; SQLite allows one engine. "
                "Stop it, serve this one with --no-engine, or use PostgreSQL "
                "(CAMPAIGND_DATABASE_URL=postgresql://...) to run several nodes."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
