"""`campaignd traffic run`: counted at a real loopback target; exit codes; exported files."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from support.target import CountingTarget

pytestmark = pytest.mark.slow


def _scenario(tmp_path: Path, **fields: object) -> Path:
    body = {
        "name": "smoke",
        "users": 10,
        "rpm": 1200,
        "duration_minutes": 0.05,
        "profiles": [{"name": "browse", "requests": [{"method": "GET", "path": "/"}]}],
        **fields,
    }
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def _run(*args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "campaignd.cli", "traffic", "run", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_a_passing_run_exits_0_and_exports_what_the_target_counted(
    target: CountingTarget, tmp_path: Path
) -> None:
    scenario = _scenario(
        tmp_path,
        target=target.url,
        thresholds=["success_rate > 0.99", "dropped == 0", "p99_ms < 5000"],
    )
    out_json, out_csv = tmp_path / "out.json", tmp_path / "out.csv"
    done = _run(scenario, "--json", out_json, "--csv", out_csv, "--quiet")
    assert done.returncode == 0, done.stderr
    # 1200/min for 3 s: 60 requests where they land.
    assert target.total == 60
    report = json.loads(out_json.read_text())
    assert report["passed"] is True
    assert report["summary"]["requests_total"] == 60
    assert report["summary"]["requests_dropped"] == 0
    assert [t["passed"] for t in report["thresholds"]] == [True, True, True]
    assert sum(p["requests"] for p in report["series"]) == 60
    rows = list(csv.DictReader(out_csv.open()))
    assert rows[-1]["second"] == "total" and rows[-1]["requests"] == "60"
    assert sum(int(r["requests"]) for r in rows[:-1]) == 60
    assert "dropped" in done.stdout


def test_a_failed_threshold_exits_1(target: CountingTarget, tmp_path: Path) -> None:
    target.status_for["/"] = 500
    scenario = _scenario(tmp_path, target=target.url, thresholds=["success_rate > 0.99"])
    done = _run(scenario, "--quiet")
    assert done.returncode == 1, done.stderr
    assert "success_rate > 0.99" in done.stderr
    assert target.total == 60


def test_dropped_arrivals_are_reported_and_can_fail_a_threshold(
    target: CountingTarget, tmp_path: Path
) -> None:
    target.delay_for["/"] = 0.5
    scenario = _scenario(tmp_path, target=target.url, users=2, rpm=600, thresholds=["dropped == 0"])
    out_json = tmp_path / "out.json"
    done = _run(scenario, "--quiet", "--json", out_json)
    assert done.returncode == 1
    dropped = json.loads(out_json.read_text())["summary"]["requests_dropped"]
    # 30 arrivals, two users busy 0.5 s each: at most ~12 can start on time.
    assert dropped >= 15
    assert f"{dropped:,}" in done.stdout


def test_two_worker_processes_deliver_the_exact_count(
    target: CountingTarget, tmp_path: Path
) -> None:
    scenario = _scenario(tmp_path, target=target.url, rpm=6000, options={"workers": 2})
    out_json = tmp_path / "out.json"
    done = _run(scenario, "--quiet", "--json", out_json)
    assert done.returncode == 0, done.stderr
    assert target.total == 300
    assert json.loads(out_json.read_text())["summary"]["workers"] == 2


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"rpm": None}, "rpm and duration_minutes"),
        ({"profiles": [{"name": "x", "requests": [{"path": "no-slash"}]}]}, "must start with"),
        ({"thresholds": ["p99 < 1"]}, "unknown metric"),
        ({"target": "http://10.9.8.7:80"}, "not in the allowed targets"),
        ({"target": "ftp://127.0.0.1"}, "http or https"),
    ],
)
def test_a_bad_scenario_exits_2_with_a_sentence(
    tmp_path: Path, fields: dict[str, object], message: str
) -> None:
    base = {"target": "http://127.0.0.1:9"}
    done = _run(_scenario(tmp_path, **{**base, **fields}), "--quiet")
    assert done.returncode == 2, done.stderr
    assert message in " ".join(done.stderr.split())  # rich wraps lines at the terminal width
    assert "Traceback" not in done.stderr + done.stdout


def test_unreadable_and_malformed_files_exit_2(tmp_path: Path) -> None:
    assert _run(tmp_path / "missing.yaml").returncode == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("target: [unclosed\n")
    done = _run(bad)
    assert done.returncode == 2
    assert "not valid YAML" in done.stderr


def test_the_example_scenario_is_valid() -> None:
    from campaignd.traffic.scenario import load_scenario

    example = Path(__file__).parents[3] / "examples" / "scenario.yaml"
    scenario = load_scenario(example)
    assert scenario.stages and scenario.thresholds
