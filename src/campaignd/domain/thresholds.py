"""Pass/fail thresholds of a scenario, like k6's: `p99_ms < 200`, `success_rate > 0.99`,
`checks > 0.99`, `step.login.p99_ms < 100`.

A tiny grammar, parsed without eval: `<metric> <operator> <number>`, where a metric of one
step is `step.<step name>.<metric>` (the name may hold spaces and dots).
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
    "checks": "passed checks / all checks (0..1), like k6's checks rate",
    "iterations": "journey iterations completed",
    "iterations_aborted": "journey iterations ended by a failed extraction",
}
# What `step.<name>.<metric>` may name.
STEP_METRICS: dict[str, str] = {
    "p50_ms": "the step's median latency, ms",
    "p90_ms": "the step's 90th percentile latency, ms",
    "p99_ms": "the step's 99th percentile latency, ms",
    "max_ms": "the step's maximum latency, ms",
    "mean_ms": "the step's mean latency, ms",
    "requests": "the step's completed requests",
    "failed": "the step's failed requests",
    "success_rate": "the step's succeeded / completed requests (0..1)",
}

_PATTERN = re.compile(
    r"^\s*(?P<metric>[a-z_][a-z0-9_]*|step\..+\.[a-z0-9_]+)\s*(?P<op><=|>=|==|!=|<|>)"
    r"\s*(?P<value>[-+0-9.eE_]+)\s*$"
)


@dataclass(frozen=True, slots=True)
class Threshold:
    metric: str
    op: str
    value: float

    @property
    def text(self) -> str:
        return f"{self.metric} {self.op} {self.value:g}"

    @property
    def step(self) -> str | None:
        """The step a `step.<name>.<metric>` threshold is about."""
        if not self.metric.startswith("step."):
            return None
        return self.metric[len("step.") :].rsplit(".", 1)[0]

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
    if metric.startswith("step."):
        step_metric = metric.rsplit(".", 1)[1]
        if step_metric not in STEP_METRICS:
            raise RuleViolation(
                f"threshold '{text}' names an unknown step metric '{step_metric}'; known: "
                f"{', '.join(STEP_METRICS)}."
            )
    elif metric not in METRICS:
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
    """A metric nothing measured (a step that never ran) is NaN, which fails every threshold."""
    return [Verdict(t, float(observed.get(t.metric, math.nan))) for t in thresholds]
