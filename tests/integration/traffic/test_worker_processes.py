"""Worker processes: the rate split across them lands exactly; stop releases everything."""

from __future__ import annotations

import asyncio
import time

import pytest

from campaignd.traffic.generation import Ending, Generation
from campaignd.traffic.plan import LoadPlan, RequestSpec, UserProfile
from support.processes import load_children
from support.target import CountingTarget

pytestmark = pytest.mark.slow


def _plan(url: str, rate: float, users: int = 20) -> LoadPlan:
    profile = UserProfile(1, "browse", (RequestSpec("GET", "/a"), RequestSpec("GET", "/b")))
    return LoadPlan(url, (profile,), total_users=users, rate_per_second=rate)


async def test_two_processes_deliver_the_exact_count_and_are_released(
    target: CountingTarget,
) -> None:
    generation = Generation(_plan(target.url, 150.0), duration_seconds=2.0, workers=2)
    run = asyncio.create_task(generation.run())
    await asyncio.sleep(1.0)
    assert len(load_children()) == 2
    assert await asyncio.wait_for(run, 20) is Ending.COMPLETED
    await generation.flush()
    assert target.total == 300
    assert generation.totals.succeeded == 300
    assert generation.totals.dropped == 0
    histogram = generation.totals.histogram
    assert 0 < histogram.get_value_at_percentile(99) <= histogram.get_max_value()
    assert load_children() == []


async def test_stop_ends_generation_within_a_second_and_joins_the_processes(
    target: CountingTarget,
) -> None:
    generation = Generation(_plan(target.url, 200.0), duration_seconds=60.0, workers=2)
    run = asyncio.create_task(generation.run())
    await asyncio.sleep(1.5)
    generation.request_stop()
    stopped_at = time.monotonic()
    assert await asyncio.wait_for(run, 10) is Ending.STOPPED
    assert time.monotonic() - stopped_at < 3.0
    assert load_children() == []
    await asyncio.sleep(1.2)
    assert target.count_between(stopped_at + 1.0, time.monotonic()) == 0
    assert target.total >= 100


async def test_a_rate_change_is_split_again_across_processes(target: CountingTarget) -> None:
    generation = Generation(_plan(target.url, 50.0), duration_seconds=60.0, workers=2)
    run = asyncio.create_task(generation.run())
    await asyncio.sleep(1.0)
    generation.set_rate(250 * 60.0)
    changed_at = time.monotonic()
    await asyncio.sleep(3.2)
    window = target.count_between(changed_at + 1.0, changed_at + 3.0)
    generation.request_stop()
    await asyncio.wait_for(run, 10)
    assert 490 <= window <= 510, window


async def test_a_ramp_delivers_the_area_under_its_stages(target: CountingTarget) -> None:
    from campaignd.domain.stages import Stage

    # 0 -> 6000 rpm over 2 s, then 2 s at 6000 rpm: 100 + 200 requests.
    stages = (Stage(2.0, 6000.0), Stage(2.0, 6000.0))
    generation = Generation(_plan(target.url, 0.0), duration_seconds=4.0, workers=1, stages=stages)
    assert await asyncio.wait_for(generation.run(), 20) is Ending.COMPLETED
    assert abs(target.total - 300) <= 3, target.total
