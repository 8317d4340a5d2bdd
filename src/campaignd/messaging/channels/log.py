"""Log channel: one JSON line per message in a file, for dry runs."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from campaignd.messaging.channels.base import ChannelSpec, OutgoingMessage, SendResult

SPEC = ChannelSpec(
    kind="log", required=frozenset({"path"}), optional=frozenset(), secret=frozenset()
)


class LogChannel:
    def __init__(self, config: dict[str, Any]) -> None:
        self.path = Path(str(config["path"]))
        self._file: TextIO | None = None
        self._lock = asyncio.Lock()

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
            }
        )
        async with self._lock:
            try:
                if self._file is None:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    self._file = self.path.open("a", encoding="utf-8")
                self._file.write(line + "\n")
                self._file.flush()
            except OSError as exc:
                return SendResult(ok=False, error=f"cannot write {self.path}: {exc.strerror}")
        return SendResult(ok=True)

    async def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
