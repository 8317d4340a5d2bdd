"""Scenario thresholds: a tiny grammar, no eval."""

from __future__ import annotations

import pytest

from campaignd.domain.errors import RuleViolation
from campaignd.domain.thresholds import Threshold, evaluate, parse_threshold


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("p99_ms < 200", Threshold("p99_ms", "<", 200.0)),
        ("success_rate>0.99", Threshold("success_rate", ">", 0.99)),
        ("  dropped == 0 ", Threshold("dropped", "==", 0.0)),
        ("rate_error <= 1e-2", Threshold("rate_error", "<=", 0.01)),
    ],
)
def test_parses_metric_operator_number(text: str, expected: Threshold) -> None:
    assert parse_threshold(text) == expected


@pytest.mark.parametrize(
    "text",
    ["p99 < 200", "p99_ms << 200", "p99_ms < abc", "__import__('os') < 1", "p99_ms < inf", ""],
)
def test_refuses_anything_else(text: str) -> None:
    with pytest.raises(RuleViolation):
        parse_threshold(text)


def test_evaluate_reports_observed_values_and_verdicts() -> None:
    verdicts = evaluate(
        [parse_threshold("p99_ms < 200"), parse_threshold("dropped == 0")],
        {"p99_ms": 250.0, "dropped": 0},
    )
    assert [(v.observed, v.passed) for v in verdicts] == [(250.0, False), (0.0, True)]


def test_checks_and_step_thresholds() -> None:
    from campaignd.domain.thresholds import evaluate, parse_threshold

    checks = parse_threshold("checks > 0.99")
    step = parse_threshold("step.log in.p99_ms < 100")
    dotted = parse_threshold("step.GET /a.b.requests >= 1")
    assert (step.step, step.metric) == ("log in", "step.log in.p99_ms")
    assert dotted.step == "GET /a.b" and checks.step is None
    verdicts = evaluate([checks, step, dotted], {"checks": 0.995, "step.log in.p99_ms": 120.0})
    assert [v.passed for v in verdicts] == [True, False, False]  # an unmeasured step fails


def test_an_unknown_step_metric_is_refused() -> None:
    import pytest

    from campaignd.domain.errors import RuleViolation
    from campaignd.domain.thresholds import parse_threshold

    with pytest.raises(RuleViolation, match="unknown step metric"):
        parse_threshold("step.login.p98_ms < 1")
