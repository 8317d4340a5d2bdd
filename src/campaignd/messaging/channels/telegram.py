"""Telegram Bot API channel: sendMessage per chat, under the Bot API's rate limits."""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from typing import Any

import aiohttp

from campaignd.messaging.channels.base import (
    ChannelSpec,
    CheckedTarget,
    OutgoingMessage,
    SendResult,
    UrlGuard,
)
from campaignd.messaging.channels.retry import backoff_seconds

SPEC = ChannelSpec(
    kind="telegram",
    required=frozenset({"bot_token"}),
    optional=frozenset({"api_base_url", "timeout_seconds", "max_attempts", "retry_base_seconds"}),
    secret=frozenset({"bot_token"}),
    defaults={
        "api_base_url": "https://api.telegram.org",
        "timeout_seconds": 10.0,
        "max_attempts": 5,
        "retry_base_seconds": 0.5,
    },
)
# The Bot API's documented limits: about 30 messages a second per bot, 1 a second per chat.
BOT_PER_SECOND = 30
CHAT_INTERVAL_SECONDS = 1.0
TRACKED_CHATS = 100_000


class TelegramChannel:
    def __init__(self, config: dict[str, Any], url_guard: UrlGuard | None = None) -> None:
        self.config = {**SPEC.defaults, **config}
        self._retry_base = float(self.config["retry_base_seconds"])
        self._base = str(self.config["api_base_url"]).rstrip("/")
        self._url = f"{self._base}/bot{self.config['bot_token']}/sendMessage"
        self._checked_base = CheckedTarget.url(self._base, url_guard)
        self._session: aiohttp.ClientSession | None = None
        self._bot_slot = 0.0
        self._chat_next: OrderedDict[str, float] = OrderedDict()
        self._lock = asyncio.Lock()

    async def _wait_for_slot(self, chat: str) -> None:
        """Reserve the next moment this bot may write to this chat, and sleep until then."""
        async with self._lock:
            now = time.monotonic()
            at = max(now, self._bot_slot, self._chat_next.get(chat, 0.0))
            self._bot_slot = at + 1.0 / BOT_PER_SECOND
            self._chat_next[chat] = at + CHAT_INTERVAL_SECONDS
            self._chat_next.move_to_end(chat)
            while len(self._chat_next) > TRACKED_CHATS:
                self._chat_next.popitem(last=False)
        if at > now:
            await asyncio.sleep(at - now)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=float(self.config["timeout_seconds"]))
            )
        return self._session

    async def send(self, message: OutgoingMessage) -> SendResult:
        refusal = await self._checked_base.refusal()
        if refusal is not None:
            return SendResult(ok=False, attempts=0, error=refusal)
        body = {"chat_id": message.address, "text": message.text}
        attempts = int(self.config["max_attempts"])
        throttled = 0.0
        error = "not sent"
        for attempt in range(1, attempts + 1):
            await self._wait_for_slot(message.address)
            try:
                async with self._client().post(
                    self._url, json=body, allow_redirects=False
                ) as response:
                    status = response.status
                    text = await response.text(errors="replace")
            except (TimeoutError, aiohttp.ClientError) as exc:
                error = f"{type(exc).__name__} calling {self._base}/bot***/sendMessage"
            else:
                try:
                    data = json.loads(text)
                except json.JSONDecodeError:
                    data = {}
                if status == 200 and data.get("ok"):
                    return SendResult(ok=True, attempts=attempt, throttled_seconds=throttled)
                description = str(data.get("description") or f"HTTP {status}")[:200]
                error = f"Telegram {data.get('error_code', status)}: {description}"
                if status == 429:
                    wait = float((data.get("parameters") or {}).get("retry_after", 1))
                    wait = min(max(wait, 0.0), 60.0)
                    throttled += wait
                    async with self._lock:
                        self._bot_slot = max(self._bot_slot, time.monotonic() + wait)
                    continue
                if status < 500:
                    return SendResult(
                        ok=False, attempts=attempt, error=error, throttled_seconds=throttled
                    )
            if attempt < attempts:
                await asyncio.sleep(backoff_seconds(attempt, self._retry_base))
        return SendResult(ok=False, attempts=attempts, error=error, throttled_seconds=throttled)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
