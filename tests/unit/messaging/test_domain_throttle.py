"""Per-domain pacing and back-off, on a virtual clock."""

from __future__ import annotations

from campaignd.messaging.domain_throttle import RESERVE_AHEAD_SECONDS, DomainThrottle


def test_a_limited_domain_gets_spaced_slots_and_others_pass() -> None:
    throttle = DomainThrottle()
    throttle.set_limits({"Slow.test": 60})
    assert throttle.reserve("slow.test", 100.0) == (0.0, True)
    assert throttle.reserve("slow.test", 100.0) == (1.0, True)
    assert throttle.reserve("fast.test", 100.0) == (0.0, True)
    assert throttle.reserve("", 100.0) == (0.0, True)


def test_slots_are_reserved_only_a_little_ahead() -> None:
    throttle = DomainThrottle()
    throttle.set_limits({"slow.test": 60})
    waits = [throttle.reserve("slow.test", 0.0) for _ in range(int(RESERVE_AHEAD_SECONDS) + 3)]
    assert all(reserved for _, reserved in waits[: int(RESERVE_AHEAD_SECONDS) + 1])
    assert waits[-1][1] is False and waits[-1][0] > 0


def test_back_off_doubles_once_per_hold_and_resets_after_a_success() -> None:
    throttle = DomainThrottle()
    assert throttle.back_off("busy.test", 0.0) == 1.0
    assert throttle.back_off("busy.test", 0.5) == 0.5  # same hold: not escalated again
    assert throttle.reserve("busy.test", 0.5) == (0.5, False)
    assert throttle.reserve("other.test", 0.5) == (0.0, True)
    assert throttle.back_off("busy.test", 1.0) == 2.0
    assert throttle.back_off("busy.test", 3.0) == 4.0
    throttle.succeeded("busy.test")
    assert throttle.back_off("busy.test", 10.0) == 1.0
