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
    name: str = ""

    @property
    def stats_name(self) -> str:
        """What the request's stats are listed under: its name, or "METHOD path"."""
        return self.name or f"{self.method} {self.path}"

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
            name=str(data.get("name") or ""),
        )


@dataclass(frozen=True, slots=True)
class UserProfile:
    """One behaviour: requests chosen by weight, then a think time before the user is free;
    or a journey: `steps` run in order by each user, with its row of `data`.

    Steps stay as given (plain, picklable data); each worker compiles them once.
    """

    profile_id: int
    name: str
    requests: tuple[RequestSpec, ...]
    think_time_seconds: float = 0.0
    steps: tuple[dict[str, Any], ...] = ()
    data: tuple[dict[str, Any], ...] = ()
    headers: dict[str, str] = field(default_factory=dict)
    think_time_ms: Any = None

    @property
    def is_journey(self) -> bool:
        return bool(self.steps)

    @property
    def stats_names(self) -> list[str]:
        if self.steps:
            return [str(s.get("name") or f"step {i + 1}") for i, s in enumerate(self.steps)]
        return [r.stats_name for r in self.requests]

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> UserProfile:
        headers = dict(row.get("headers") or {})
        steps = tuple(row.get("steps") or ())
        think = row.get("think_time_ms") or 0
        return cls(
            profile_id=int(row["id"]),
            name=str(row["name"]),
            requests=()
            if steps
            else tuple(RequestSpec.from_json(r, headers) for r in row["requests"]),
            think_time_seconds=float(think) / 1000.0 if isinstance(think, (int, float)) else 0.0,
            steps=steps,
            data=tuple(row.get("data") or ()),
            headers=headers,
            think_time_ms=think or None,
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
        return [profile for _, profile in self.indexed_users_for(worker_index, workers)]

    def indexed_users_for(self, worker_index: int, workers: int) -> list[tuple[int, UserProfile]]:
        """(user index over the whole campaign, profile) of this worker's users."""
        users = range(worker_index, self.total_users, workers)
        return [(u, self.profiles[u % len(self.profiles)]) for u in users]

    @property
    def step_names(self) -> list[str]:
        """Every step or request name of the plan, each once, in the profiles' order."""
        names: dict[str, None] = {}
        for profile in self.profiles:
            names.update(dict.fromkeys(profile.stats_names))
        return list(names)
