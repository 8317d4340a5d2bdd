"""Webhook channel: a signed JSON POST per recipient, idempotent, retried, rate-aware."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from campaignd.messaging.channels.base import (
    ChannelSpec,
    CheckedTarget,
    OutgoingMessage,
    SendResult,
    UrlGuard,
    header_refusal,
)
from campaignd.messaging.channels.http_post import PostClient, PostError
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
        self._client: PostClient | None = None

    def client(self) -> PostClient:
        if self._client is None:
            self._client = PostClient(self.url, self.timeout)
        return self._client

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
                answer = await self.client().post(body, headers)
            except TimeoutError:
                error = f"TimeoutError after {attempt} attempt(s)"
            except PostError as exc:
                error = f"{exc} after {attempt} attempt(s)"
            else:
                status, retry_after = answer.status, answer.retry_after
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
                        error=f"HTTP {status}: {answer.body.decode(errors='replace')[:200]}",
                    )
                error = f"HTTP {status} after {attempt} attempt(s)"
            if attempt < self.max_attempts:
                await asyncio.sleep(backoff_seconds(attempt, self.retry_base))
        return SendResult(
            ok=False, attempts=self.max_attempts, error=error, throttled_seconds=throttled
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
