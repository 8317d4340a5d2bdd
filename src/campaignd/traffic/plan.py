"""What a worker needs to generate load: plain, picklable data built from the campaign rows."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class RequestSpec:
    method: str
    path: str
    weight: float = 1.0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any], profile_headers: dict[str, str]) -> RequestSpec:
        body = data.get("body")
        headers = {**profile_headers, **(data.get("headers") or {})}
        encoded: bytes | None
        if body is None:
            encoded = None
        elif isinstance(body, str):
            encoded = body.encode()
        else:
            encoded = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        return cls(
            method=str(data.get("method") or "GET").upper(),
            path=str(data["path"]),
            weight=float(data.get("weight", 1.0)),
            headers=headers,
            body=encoded,
        )


@dataclass(frozen=True, slots=True)
class UserProfile:
    """One behaviour: requests chosen by weight, then a think time before the user is free."""

    profile_id: int
    name: str
    requests: tuple[RequestSpec, ...]
    think_time_seconds: float = 0.0

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> UserProfile:
        headers = dict(row.get("headers") or {})
        return cls(
            profile_id=int(row["id"]),
            name=str(row["name"]),
            requests=tuple(RequestSpec.from_json(r, headers) for r in row["requests"]),
            think_time_seconds=float(row.get("think_time_ms") or 0) / 1000.0,
        )


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """Everything one worker needs: where, who, how fast."""

    target_url: str
    profiles: tuple[UserProfile, ...]
    total_users: int
    rate_per_second: float
    request_timeout_seconds: float = 30.0
    # The addresses the allowlist check resolved the target's host to; connections go there
    # only (empty: the host was allowed by name and is resolved when connecting).
    target_addresses: tuple[str, ...] = ()

    def users_for(self, worker_index: int, workers: int) -> list[UserProfile]:
        """This worker's share of the virtual users, profiles assigned round-robin."""
        users = range(worker_index, self.total_users, workers)
        return [self.profiles[u % len(self.profiles)] for u in users]
