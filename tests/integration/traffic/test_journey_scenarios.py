"""Journeys from scenario files and HAR recordings, run headless against the loopback app."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from campaignd.traffic.scenario import ScenarioError, load_scenario
from support.journey_app import JourneyApp, journey_profile

pytestmark = pytest.mark.slow


@pytest.fixture
def app() -> Iterator[JourneyApp]:
    with JourneyApp() as server:
        yield server


def _cli(*args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "campaignd.cli", "traffic", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _write(tmp_path: Path, body: dict[str, Any]) -> Path:
    path = tmp_path / "journey.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def test_step_and_check_thresholds_decide_the_exit_code(app: JourneyApp, tmp_path: Path) -> None:
    scenario = _write(
        tmp_path,
        {
            "target": app.url,
            "users": 6,
            "rpm": 3600,
            "duration_minutes": 0.04,
            "profiles": [journey_profile()],
            # every third /profile answers ok=false: the checks rate is about 0.89
            "thresholds": ["checks > 0.99", "step.log in.p99_ms < 5000", "iterations > 0"],
        },
    )
    out = tmp_path / "out.json"
    done = _cli("run", scenario, "--json", out, "--quiet")
    assert done.returncode == 1, done.stderr
    assert "checks > 0.99" in done.stderr
    report = json.loads(out.read_text())
    verdicts = {t["threshold"]: t["passed"] for t in report["thresholds"]}
    assert verdicts == {
        "checks > 0.99": False,
        "step.log in.p99_ms < 5000": True,
        "iterations > 0": True,
    }
    checks = {c["name"]: c for c in report["summary"]["checks"]}
    assert checks["profile ok"]["fails"] == app.profile_false
    assert app.refused == []
    assert "step log in" in done.stdout


def test_a_threshold_on_an_unknown_step_or_a_bad_template_is_refused(tmp_path: Path) -> None:
    base = {"target": "http://127.0.0.1:9", "users": 1, "rpm": 60, "duration_minutes": 0.1}
    path = _write(
        tmp_path, {**base, "profiles": [journey_profile()], "thresholds": ["step.nope.p99_ms < 1"]}
    )
    with pytest.raises(ScenarioError, match="names step 'nope'"):
        load_scenario(path)
    broken = journey_profile()
    broken["steps"] = [{"name": "a", "path": "/{{ token }}"}]
    with pytest.raises(ScenarioError, match=r"steps\[0\]\.path"):
        load_scenario(_write(tmp_path, {**base, "profiles": [broken]}))


def _har(app: JourneyApp) -> dict[str, Any]:
    def entry(method: str, path: str, mime: str, status: int = 200, **extra: Any) -> dict:
        return {
            "startedDateTime": f"2026-01-01T00:00:{len(entries):02d}Z",
            "request": {
                "method": method,
                "url": f"{app.url}{path}",
                "headers": [
                    {"name": "Accept", "value": "application/json"},
                    {"name": "Cookie", "value": "sid=recorded"},
                    {"name": ":authority", "value": "x"},
                    {"name": "Accept-Encoding", "value": "gzip"},
                ],
                **extra,
            },
            "response": {"status": status, "content": {"mimeType": mime}},
        }

    entries: list[dict[str, Any]] = []
    entries.append(
        entry(
            "POST",
            "/login",
            "application/json",
            postData={"mimeType": "application/json", "text": '{"email": "ann@example.com"}'},
        )
    )
    entries.append(entry("GET", "/static/app.js", "application/javascript"))
    entries.append(entry("GET", "/logo.png", "image/png"))
    entries.append(entry("GET", "/items/5?x=1", "application/json", status=401))
    entries.append(
        {
            **entry("GET", "/elsewhere", "text/html"),
            "request": {"method": "GET", "url": "http://other.example/x"},
        }
    )
    return {"log": {"version": "1.2", "entries": entries}}


def test_import_har_writes_a_scenario_with_one_step_per_request(
    app: JourneyApp, tmp_path: Path
) -> None:
    har = tmp_path / "session.har"
    har.write_text(json.dumps(_har(app)))
    done = _cli("import-har", har)
    assert done.returncode == 0, done.stderr
    scenario = yaml.safe_load((tmp_path / "session.yaml").read_text())
    steps = scenario["profiles"][0]["steps"]
    assert scenario["target"] == app.url
    assert [(s["method"], s["path"]) for s in steps] == [
        ("POST", "/login"),
        ("GET", "/items/5?x=1"),
    ]
    assert steps[0]["body"] == {"email": "ann@example.com"}
    assert steps[0]["headers"] == {"Accept": "application/json"}
    assert steps[1]["checks"] == [{"status": 401}]
    assert "static" in done.stderr

    everything = tmp_path / "all.yaml"
    done = _cli("import-har", har, "--include-static", "-o", everything)
    assert done.returncode == 0, done.stderr
    assert len(yaml.safe_load(everything.read_text())["profiles"][0]["steps"]) == 4

    # the written scenario runs as it is
    scenario["duration_minutes"] = 0.03
    scenario["rpm"] = 1200
    path = _write(tmp_path, scenario)
    loaded = load_scenario(path)
    assert loaded.plan.step_names == [s["name"] for s in steps]
    ran = _cli("run", path, "--quiet", "--json", tmp_path / "ran.json")
    assert ran.returncode == 0, ran.stderr + ran.stdout
    assert len(app.logins) > 0

    other = _cli("import-har", har, "--include-host", "nowhere.example")
    assert other.returncode == 2
    assert "no request" in other.stderr
