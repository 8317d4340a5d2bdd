"""One virtual user's journey: the step it is on, its variables, its cookies, its iteration.

The worker asks `request()` for the bytes of the user's next step when an arrival is given
to it, and hands the response to `answered()`, which runs the step's checks and extractions
and moves the user on: to the next step, to the start of a new iteration after the last
one, or back to the start when an extraction failed (an aborted iteration).
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from campaignd.domain.journeys import MISSING, CompiledStep, Scope, compile_steps
from campaignd.traffic.http import HttpTarget, JourneyConnection, StepEncoder
from campaignd.traffic.plan import UserProfile

SET_COOKIE_DELETES = (b"max-age=0", b"max-age=-")
# A decoder's own loop: json.loads on bytes first sniffs their encoding, per response.
_json_document = json.JSONDecoder().decode


@dataclass(frozen=True, slots=True)
class CompiledJourney:
    """A profile's steps compiled once per worker, with their pre-encoded request parts."""

    steps: tuple[CompiledStep, ...]
    encoders: tuple[StepEncoder, ...]
    wanted: tuple[frozenset[bytes], ...]
    stats_index: tuple[int, ...]  # each step's index in the worker's WindowRecorder
    data: tuple[dict[str, Any], ...]

    @classmethod
    def build(
        cls, profile: UserProfile, target: HttpTarget, stats_names: Sequence[str]
    ) -> CompiledJourney:
        steps = compile_steps(profile.steps, profile.data, profile.headers, profile.think_time_ms)
        return cls(
            steps=steps,
            encoders=tuple(StepEncoder(s, target) for s in steps),
            wanted=tuple(frozenset(h.encode() for h in s.wanted_headers) for s in steps),
            stats_index=tuple(list(stats_names).index(s.name) for s in steps),
            data=profile.data,
        )


class JourneyState:
    """What one user carries between its steps."""

    __slots__ = ("cookie", "cookies", "journey", "last_set", "scope", "step")

    def __init__(self, journey: CompiledJourney, user_index: int, rng: random.Random) -> None:
        self.journey = journey
        row = journey.data[user_index % len(journey.data)] if journey.data else {}
        self.scope = Scope(user_index, row, rng)
        self.step = 0
        self.cookies: dict[str, str] = {}
        self.cookie: str | None = None
        self.last_set: list[bytes] = []

    @property
    def current(self) -> CompiledStep:
        return self.journey.steps[self.step]

    @property
    def stats_index(self) -> int:
        return self.journey.stats_index[self.step]

    def request(self) -> tuple[bytes, bool]:
        """The current step's request for this user; TemplateFailure if it cannot be built."""
        encoder = self.journey.encoders[self.step]
        return encoder.build(self.scope, self.cookie), encoder.head

    def prepare(self, conn: JourneyConnection) -> None:
        step = self.current
        conn.expect(self.journey.wanted[self.step], step.needs_body)

    def answered(
        self, status: int, conn: JourneyConnection | None
    ) -> tuple[list[tuple[str, bool]], bool | None]:
        """Checks (name, passed) of the current step; then whether an iteration ended:
        None (it goes on), False (completed), True (aborted by a failed extraction)."""
        step = self.current
        if conn is not None and conn.cookies:
            self._keep_cookies(conn.cookies)
        body = b""
        document: Any = MISSING
        if status and conn is not None and step.needs_body:
            body = b"".join(conn.body)
            if step.needs_json:
                try:
                    document = _json_document(body.decode("utf-8", "replace"))
                except ValueError:
                    document = MISSING
        headers = conn.headers if conn is not None and status else {}
        checks = [(c.name, c.holds(status, body, document)) for c in step.checks]
        for rule in step.extract:
            value = rule.apply(headers, body, document) if status else MISSING
            if value is MISSING:
                return checks, self.restart(aborted=True)
            self.scope.vars[rule.var] = value
        if self.step + 1 < len(self.journey.steps):
            self.step += 1
            return checks, None
        return checks, self.restart(aborted=False)

    def restart(self, *, aborted: bool) -> bool:
        """Back to the first step of the next iteration; returns `aborted`."""
        self.step = 0
        self.scope.iteration += 1
        return aborted

    def think_seconds(self, step: CompiledStep, default: float) -> float:
        if step.think is None:
            return default
        low, high = step.think
        return low if low == high else self.scope.rng.uniform(low, high)

    def _keep_cookies(self, lines: list[bytes]) -> None:
        if lines == self.last_set:
            return  # the same Set-Cookie lines as last time change nothing
        self.last_set = lines
        for line in lines:
            pair, _, attributes = line.partition(b";")
            name, eq, value = pair.partition(b"=")
            if not eq:
                continue
            key = name.strip().decode("latin-1")
            if any(d in attributes.lower().replace(b" ", b"") for d in SET_COOKIE_DELETES):
                self.cookies.pop(key, None)
            else:
                self.cookies[key] = value.strip().decode("latin-1")
        self.cookie = "; ".join(f"{k}={v}" for k, v in self.cookies.items()) or None
