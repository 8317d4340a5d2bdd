"""Latency figures: the fast percentile pass equals hdrh's own, and p99 never exceeds max."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from campaignd.traffic.stats import (
    LatencyMemo,
    WindowRecorder,
    WindowStats,
    latency_summary,
    new_histogram,
    percentiles,
    summarize,
)


@settings(deadline=None, max_examples=50)
@given(st.lists(st.integers(min_value=1, max_value=60_000_000), min_size=1, max_size=300))
def test_percentiles_equal_hdrh_and_stay_at_or_below_max(values: list[int]) -> None:
    histogram = new_histogram()
    for v in values:
        histogram.record_value(v)
    fast = percentiles(histogram, (50, 90, 99, 100))
    slow = [
        min(histogram.get_value_at_percentile(p), histogram.get_max_value())
        for p in (50, 90, 99, 100)
    ]
    assert fast == slow
    summary = latency_summary(histogram, sum(values))
    assert summary["p50"] <= summary["p90"] <= summary["p99"] <= summary["max"]
    assert summary["mean"] == round(sum(values) / len(values) / 1000, 3), "exact, not bucketed"


def test_windows_shipped_between_processes_merge_without_loss() -> None:
    recorders = [WindowRecorder(), WindowRecorder()]
    for i in range(1000):
        recorders[i % 2].success((i + 1) / 1_000_000)
    recorders[1].failure(0.5, "HTTP 500")
    recorders[0].dropped(3)
    merged = WindowStats(started_at=0.0, seconds=0.0)
    for recorder in recorders:
        merged.merge(WindowStats.from_wire(recorder.cut().to_wire()))
    assert (merged.succeeded, merged.failed, merged.dropped) == (1000, 1, 3)
    assert merged.errors == {"HTTP 500": 1}
    assert merged.histogram.get_total_count() == 1001
    assert merged.latency_sum_us == sum(range(1, 1001)) + 500_000
    summary = latency_summary(merged.histogram, merged.latency_sum_us)
    assert summary["p99"] <= summary["max"]
    assert 499 <= summary["max"] <= 501


def test_a_memo_summarises_merged_totals_again_only_when_they_grew() -> None:
    totals, memo = WindowStats(started_at=0.0, seconds=0.0), LatencyMemo()
    for latency_s in (0.001, 0.5):
        recorder = WindowRecorder()
        for _ in range(100):
            recorder.success(latency_s)
        totals.merge(WindowStats.from_wire(recorder.cut().to_wire()))
        remembered = summarize(totals, 60.0, 60.0, memo=memo)
        assert remembered == summarize(totals, 60.0, 60.0), "the same figures as worked out anew"
        again = summarize(totals, 60.0, 60.0, memo=memo)
        again["latency_ms"]["p50"] = -1.0  # a caller's change does not reach the memo
        assert summarize(totals, 60.0, 60.0, memo=memo) == remembered
    assert remembered["latency_ms"]["max"] >= 499, "the second window's latencies count"
