"""`campaignd traffic run`: one scenario, no server or database, live progress, exports."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from campaignd.domain.stages import planned_requests
from campaignd.domain.targets import Allowlist
from campaignd.domain.thresholds import Verdict, evaluate
from campaignd.engine.guard import TargetGuard
from campaignd.settings import Settings
from campaignd.traffic.generation import Generation
from campaignd.traffic.pool import worker_count
from campaignd.traffic.scenario import Scenario, ScenarioError
from campaignd.traffic.stats import WindowStats, percentiles, summarize


@dataclass
class RunResult:
    summary: dict[str, Any]
    verdicts: list[Verdict]
    series: list[dict[str, Any]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(v.passed for v in self.verdicts)


async def check_target(scenario: Scenario, settings: Settings) -> None:
    """Refuse a target outside CAMPAIGND_ALLOWED_TARGETS, as the server does, and pin the
    scenario's plan to the addresses the check resolved (no second lookup when connecting)."""
    guard = TargetGuard(Allowlist.parse(settings.allowed_targets))
    try:
        checked = await guard.check_target(scenario.target, field="target")
    except ScenarioError:
        raise
    except Exception as exc:
        message = getattr(exc, "message", str(exc))
        raise ScenarioError(f"{scenario.source}: {message}") from None
    scenario.plan = replace(scenario.plan, target_addresses=checked.addresses)


def _point(second: int, window: WindowStats, target_rpm: float | None) -> dict[str, Any]:
    p50, p99 = percentiles(window.histogram, (50, 99)) if window.total else (0, 0)
    seconds = window.seconds or 1.0
    return {
        "second": second,
        "at": datetime.fromtimestamp(window.started_at, UTC).isoformat(),
        "window_seconds": round(window.seconds, 6),
        "requests": window.total,
        "succeeded": window.succeeded,
        "failed": window.failed,
        "dropped": window.dropped,
        "rpm": round(window.total * 60.0 / seconds, 3),
        "target_rpm": target_rpm,
        "p50_ms": p50 / 1000.0 if window.total else None,
        "p99_ms": p99 / 1000.0 if window.total else None,
    }


def _observed(summary: dict[str, Any]) -> dict[str, float]:
    latency = summary["latency_ms"]
    checks = summary["checks"]
    passes = sum(c["passes"] for c in checks)
    tried = passes + sum(c["fails"] for c in checks)
    per_step: dict[str, float] = {}
    for step in summary["steps"]:
        prefix = f"step.{step['name']}."
        done = step["requests"]
        per_step.update(
            {
                prefix + "p50_ms": step["p50"],
                prefix + "p90_ms": step["p90"],
                prefix + "p99_ms": step["p99"],
                prefix + "max_ms": step["max"],
                prefix + "mean_ms": step["mean"],
                prefix + "requests": done,
                prefix + "failed": step["failed"],
                prefix + "success_rate": (done - step["failed"]) / done if done else 0.0,
            }
        )
    return {
        **per_step,
        "checks": passes / tried if tried else math.nan,
        "iterations": summary["iterations"],
        "iterations_aborted": summary["iterations_aborted"],
        "p50_ms": latency["p50"],
        "p90_ms": latency["p90"],
        "p99_ms": latency["p99"],
        "max_ms": latency["max"],
        "mean_ms": latency["mean"],
        "success_rate": summary["success_rate"],
        "failed": summary["requests_failed"],
        "dropped": summary["requests_dropped"],
        "requests": summary["requests_total"],
        "achieved_rpm": summary["achieved_rpm"],
        "rate_error": summary["rate_error"] if summary["rate_error"] is not None else math.inf,
    }


async def run_scenario(
    scenario: Scenario,
    *,
    on_window: Callable[[dict[str, Any], Generation], None] | None = None,
) -> RunResult:
    """Generate the scenario's load to the end (or SIGINT/SIGTERM) and summarize it."""
    series: list[dict[str, Any]] = []
    closed = scenario.closed_loop

    async def record(window: WindowStats) -> None:
        rpm = None if closed else round(generation.current_rpm(), 3)
        point = _point(len(series) + 1, window, rpm)
        series.append(point)
        if on_window is not None:
            on_window(point, generation)

    generation = Generation(
        scenario.plan,
        duration_seconds=scenario.duration_seconds,
        drain_seconds=scenario.options.drain_seconds,
        stages=scenario.stages,
        on_window=record,
    )
    generation.worker_count = worker_count(scenario.options.workers, generation.peak_rate)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, generation.request_stop)
    started = time.monotonic()
    try:
        ending = await generation.run()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
    await generation.flush()
    active = generation.active_seconds
    asked_rpm = None if closed else scenario.plan.rate_per_second * 60.0
    summary = summarize(generation.totals, active, asked_rpm or 0.0, scenario.plan.step_names)
    asked = None
    if not closed:
        if scenario.stages:
            asked = planned_requests(scenario.stages, asked_rpm or 0.0, active)
        else:
            asked = (asked_rpm or 0.0) * active / 60.0
    issued = summary["requests_total"] + summary["requests_dropped"]
    summary.update(
        {
            "scenario": scenario.name,
            "target": scenario.target,
            "ending": ending.value,
            "workers": generation.worker_count,
            "users": scenario.plan.total_users,
            "closed_loop": closed,
            "stages": len(scenario.stages),
            "target_rpm": asked_rpm,
            "requests_asked": round(asked, 3) if asked is not None else None,
            "rate_error": round(abs(issued - asked) / asked, 6) if asked else None,
            "wall_seconds": round(time.monotonic() - started, 3),
        }
    )
    return RunResult(summary, evaluate(scenario.thresholds, _observed(summary)), series)


# presentation -----------------------------------------------------------------------------
class LiveProgress:
    """A rich progress bar over the scenario's duration: elapsed, rpm, success rate, p99."""

    def __init__(self, console: Console, duration_seconds: float) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[figures]}"),
            console=console,
            transient=False,
        )
        self.task = self.progress.add_task(
            "generating", total=duration_seconds, figures="starting workers…"
        )

    def update(self, point: dict[str, Any], generation: Generation) -> None:
        done = point["succeeded"]
        total = point["requests"]
        success = f"{done / total:.2%}" if total else "-"
        p99 = f"{point['p99_ms']:.2f} ms" if point["p99_ms"] is not None else "-"
        self.progress.update(
            self.task,
            completed=generation.active_seconds,
            figures=f"{point['rpm']:,.0f} rpm  ok {success}  p99 {p99}  dropped {point['dropped']}",
        )


def summary_table(result: RunResult) -> Table:
    s = result.summary
    lat = s["latency_ms"]
    table = Table(title=f"campaignd traffic run: {s['scenario']}", show_header=False)
    table.add_column("figure", style="bold")
    table.add_column("value", justify="right")
    if s["closed_loop"]:
        asked = "max (closed loop)"
    elif s["stages"]:
        asked = f"{s['stages']} stages, {s['requests_asked']:,.0f} requests planned"
    else:
        asked = f"{s['target_rpm']:,.1f} rpm"
    rows = [
        ("target", s["target"]),
        ("ending", s["ending"]),
        ("workers / users", f"{s['workers']} / {s['users']}"),
        ("active seconds", f"{s['active_seconds']:.2f}"),
        ("requests", f"{s['requests_total']:,}"),
        ("succeeded / failed", f"{s['requests_succeeded']:,} / {s['requests_failed']:,}"),
        ("dropped (no free user)", f"{s['requests_dropped']:,}"),
        ("success rate", f"{s['success_rate']:.4%}"),
        ("asked", asked),
        ("achieved", f"{s['achieved_rpm']:,.1f} rpm ({s['achieved_rpm'] / 60:,.1f}/s)"),
    ]
    if s["rate_error"] is not None:
        rows.append(("rate error", f"{s['rate_error']:.3%}"))
    rows.append(
        (
            "latency ms p50/p90/p99/max",
            f"{lat['p50']:.3f} / {lat['p90']:.3f} / {lat['p99']:.3f} / {lat['max']:.3f}",
        )
    )
    for reason, count in sorted(s["errors"].items()):
        rows.append((f"error: {reason}", f"{count:,}"))
    if s["iterations"] or s["iterations_aborted"]:
        rows.append(("iterations (aborted)", f"{s['iterations']:,} ({s['iterations_aborted']:,})"))
    for step in s["steps"]:
        rows.append(
            (
                f"step {step['name']}",
                f"{step['requests']:,} req, {step['failed']:,} failed, p50 {step['p50']:.3f} "
                f"p99 {step['p99']:.3f} ms",
            )
        )
    for check in s["checks"]:
        rows.append(
            (
                f"check {check['step']}: {check['name']}",
                f"{check['passes']:,} ok / {check['fails']:,} failed",
            )
        )
    for verdict in result.verdicts:
        mark = "[green]pass[/]" if verdict.passed else "[red]FAIL[/]"
        rows.append((f"threshold {verdict.threshold.text}", f"{verdict.observed:g}  {mark}"))
    for name, value in rows:
        table.add_row(name, str(value))
    return table


def export_json(result: RunResult, path: Path) -> None:
    body = {
        "summary": result.summary,
        "thresholds": [
            {
                "threshold": v.threshold.text,
                "observed": v.observed if math.isfinite(v.observed) else None,
                "passed": v.passed,
            }
            for v in result.verdicts
        ],
        "passed": result.passed,
        "series": result.series,
    }
    path.write_text(json.dumps(body, indent=2, allow_nan=False, default=str) + "\n")


CSV_FIELDS = [
    "second",
    "at",
    "window_seconds",
    "requests",
    "succeeded",
    "failed",
    "dropped",
    "rpm",
    "target_rpm",
    "p50_ms",
    "p99_ms",
]


def export_csv(result: RunResult, path: Path) -> None:
    """The per-second series, then one `total` row with the summary's figures."""
    s = result.summary
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(result.series)
        writer.writerow(
            {
                "second": "total",
                "at": "",
                "window_seconds": s["active_seconds"],
                "requests": s["requests_total"],
                "succeeded": s["requests_succeeded"],
                "failed": s["requests_failed"],
                "dropped": s["requests_dropped"],
                "rpm": s["achieved_rpm"],
                "target_rpm": s["target_rpm"],
                "p50_ms": s["latency_ms"]["p50"],
                "p99_ms": s["latency_ms"]["p99"],
            }
        )
