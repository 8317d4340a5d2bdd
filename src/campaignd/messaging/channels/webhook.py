"""Webhook channel: a signed JSON POST per recipient, idempotent, retried, rate-aware."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from campaignd.messaging.channels.base import (
    ChannelSpec,
    CheckedTarget,
    OutgoingMessage,
    SendResult,
    UrlGuard,
    header_refusal,
)
from campaignd.messaging.channels.retry import backoff_seconds, retry_after_seconds, signature

SPEC = ChannelSpec(
    kind="webhook",
    required=frozenset({"url"}),
    optional=frozenset({"signing_secret", "timeout_seconds", "max_attempts", "retry_base_seconds"}),
    secret=frozenset({"signing_secret"}),
    defaults={"timeout_seconds": 10.0, "max_attempts": 5, "retry_base_seconds": 0.2},
)


class WebhookChannel:
    def __init__(self, config: dict[str, Any], url_guard: UrlGuard | None = None) -> None:
        config = {**SPEC.defaults, **config}
        self.url = str(config["url"])
        self.secret = config.get("signing_secret")
        self.timeout = float(config["timeout_seconds"])
        self.max_attempts = int(config["max_attempts"])
        self.retry_base = float(config["retry_base_seconds"])
        self._checked_url = CheckedTarget.url(self.url, url_guard)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=256, ttl_dns_cache=60),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            )
        return self._session

    async def send(self, message: OutgoingMessage) -> SendResult:
        refusal = await self._checked_url.refusal()
        if refusal is not None:
            return SendResult(ok=False, attempts=0, error=refusal)
        refusal = header_refusal({"external_id": message.external_id})  # the Idempotency-Key
        if refusal is not None:
            return SendResult(ok=False, attempts=0, error=refusal)
        payload: dict[str, Any] = {
            "campaign_id": message.campaign_id,
            "recipient": {"external_id": message.external_id, "address": message.address},
            "message": message.text,
        }
        if message.variant is not None:
            payload["variant"] = message.variant
        if message.test:
            payload["test"] = True
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "Idempotency-Key": message.idempotency_key}
        if self.secret:
            headers["X-Campaignd-Signature"] = signature(self.secret, body)
        throttled = 0.0
        error = "not sent"
        for attempt in range(1, self.max_attempts + 1):
            try:
                async with self._client().post(
                    self.url, data=body, headers=headers, allow_redirects=False
                ) as response:
                    text = await response.text(errors="replace")
                    status = response.status
                    retry_after = response.headers.get("Retry-After")
            except (TimeoutError, aiohttp.ClientError) as exc:
                error = f"{type(exc).__name__} after {attempt} attempt(s)"
            else:
                if 200 <= status < 300:
                    return SendResult(ok=True, attempts=attempt, throttled_seconds=throttled)
                if status == 429:
                    wait = retry_after_seconds(retry_after)
                    throttled += wait
                    error = f"HTTP 429 after {attempt} attempt(s)"
                    if attempt < self.max_attempts:
                        await asyncio.sleep(wait)
                    continue
                if 300 <= status < 400:
                    return SendResult(
                        ok=False,
                        attempts=attempt,
                        throttled_seconds=throttled,
                        error=f"HTTP {status}: redirects are not followed",
                    )
                if status < 500:
                    return SendResult(
                        ok=False,
                        attempts=attempt,
                        throttled_seconds=throttled,
                        error=f"HTTP {status}: {text[:200]}",
                    )
                error = f"HTTP {status} after {attempt} attempt(s)"
            if attempt < self.max_attempts:
                await asyncio.sleep(backoff_seconds(attempt, self.retry_base))
        return SendResult(
            ok=False, attempts=self.max_attempts, error=error, throttled_seconds=throttled
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
