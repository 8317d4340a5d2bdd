"""Log channel: one JSON line per message in a file, for dry runs, inside one directory."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from campaignd.domain.errors import InvalidInput
from campaignd.messaging.channels.base import ChannelSpec, OutgoingMessage, SendResult

SPEC = ChannelSpec(
    kind="log", required=frozenset({"path"}), optional=frozenset(), secret=frozenset()
)


def confine(path: str, directory: Path) -> Path:
    """The file `path` names inside `directory` (symlinks resolved), or InvalidInput.

    `path` is relative to the directory; an absolute path is accepted only when it lies
    inside it. `..` and symlinks that lead out are refused: the service must not become a
    way to append to any file its user may write.
    """
    root = directory.resolve()
    try:
        target = (root / path).resolve()
    except (OSError, ValueError):
        target = None
    if target is None or target == root or not target.is_relative_to(root):
        raise InvalidInput(
            f"Field 'config.path' must name a file inside the log channel directory {root} "
            "(CAMPAIGND_LOG_CHANNEL_DIR); give a path relative to it.",
            field="config.path",
            directory=str(root),
        )
    return target


class LogChannel:
    def __init__(self, config: dict[str, Any], directory: Path) -> None:
        self.path = str(config["path"])
        self.directory = directory
        self._file: TextIO | None = None
        self._lock = asyncio.Lock()

    def _open(self) -> TextIO:
        target = confine(self.path, self.directory)  # again: the disk may have changed
        target.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
        return os.fdopen(os.open(target, flags, 0o640), "a", encoding="utf-8")

    async def send(self, message: OutgoingMessage) -> SendResult:
        line = json.dumps(
            {
                "at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                "campaign_id": message.campaign_id,
                "external_id": message.external_id,
                "address": message.address,
                "variant": message.variant,
                "subject": message.subject,
                "idempotency_key": message.idempotency_key,
                "message": message.text,
                **({"test": True} if message.test else {}),
            }
        )
        async with self._lock:
            try:
                if self._file is None:
                    self._file = self._open()
                self._file.write(line + "\n")
                self._file.flush()
            except InvalidInput as exc:
                return SendResult(ok=False, attempts=0, error=exc.message)
            except OSError as exc:
                return SendResult(ok=False, error=f"cannot write {self.path}: {exc.strerror}")
        return SendResult(ok=True)

    async def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
