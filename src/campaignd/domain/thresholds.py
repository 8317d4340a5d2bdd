"""Pass/fail thresholds of a scenario, like k6's: `p99_ms < 200`, `success_rate > 0.99`.

A tiny grammar, parsed without eval: `<metric> <operator> <number>`.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from campaignd.domain.errors import RuleViolation

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}

# What a threshold may name, and what each means (all read from the run's summary).
METRICS: dict[str, str] = {
    "p50_ms": "median latency, ms",
    "p90_ms": "90th percentile latency, ms",
    "p99_ms": "99th percentile latency, ms",
    "max_ms": "maximum latency, ms",
    "mean_ms": "mean latency, ms",
    "success_rate": "succeeded / completed requests (0..1)",
    "failed": "failed requests",
    "dropped": "arrivals dropped because no virtual user was free",
    "requests": "completed requests",
    "achieved_rpm": "completed requests per minute of active time",
    "rate_error": "|achieved - asked| / asked over the run (0..1)",
}

_PATTERN = re.compile(
    r"^\s*(?P<metric>[a-z_][a-z0-9_]*)\s*(?P<op><=|>=|==|!=|<|>)\s*(?P<value>[-+0-9.eE_]+)\s*$"
)


@dataclass(frozen=True, slots=True)
class Threshold:
    metric: str
    op: str
    value: float

    @property
    def text(self) -> str:
        return f"{self.metric} {self.op} {self.value:g}"

    def holds(self, observed: float) -> bool:
        return OPERATORS[self.op](observed, self.value)


def parse_threshold(text: str) -> Threshold:
    """`"p99_ms < 200"` → Threshold("p99_ms", "<", 200.0); RuleViolation for anything else."""
    if not isinstance(text, str):
        raise RuleViolation(f"threshold {text!r} must be a string like 'p99_ms < 200'.")
    match = _PATTERN.match(text)
    if match is None:
        raise RuleViolation(
            f"threshold '{text}' is not '<metric> <operator> <number>' "
            f"(operators: {' '.join(OPERATORS)})."
        )
    metric = match["metric"]
    if metric not in METRICS:
        raise RuleViolation(
            f"threshold '{text}' names an unknown metric '{metric}'; known: {', '.join(METRICS)}."
        )
    try:
        value = float(match["value"])
    except ValueError:
        raise RuleViolation(f"threshold '{text}' has no valid number.") from None
    if not math.isfinite(value):
        raise RuleViolation(f"threshold '{text}' needs a finite number.")
    return Threshold(metric, match["op"], value)


@dataclass(frozen=True, slots=True)
class Verdict:
    threshold: Threshold
    observed: float

    @property
    def passed(self) -> bool:
        return self.threshold.holds(self.observed)


def evaluate(thresholds: list[Threshold], observed: Mapping[str, float]) -> list[Verdict]:
    return [Verdict(t, float(observed[t.metric])) for t in thresholds]
