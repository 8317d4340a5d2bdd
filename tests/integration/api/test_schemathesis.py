"""Schemathesis against the served /openapi.json: no 5xx, every response fits the schema."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from support.service import ServiceProcess

pytestmark = pytest.mark.slow

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    ]
)
# Domain rules (the target allowlist, ids that must exist) cannot be said in a schema, so
# "schema-valid data must be accepted" is not among the checks; everything else is.
# Every phase runs: examples, coverage (about 3,100 boundary and negative cases, ~46 per
# operation), fuzzing and stateful. Fuzzing makes MAX_EXAMPLES cases per operation; at 30 it
# was 25 of the test's 45 s.
MAX_EXAMPLES = 15


def test_the_api_holds_its_schema_under_generated_input(tmp_path: Path) -> None:
    token = "schemathesis-token"
    proc = ServiceProcess(
        f"sqlite:///{tmp_path / 'st.db'}", tmp_path / "service.log", CAMPAIGND_API_TOKEN=token
    ).start()
    try:
        result = subprocess.run(
            [
                str(Path(sys.executable).with_name("schemathesis")),
                "run",
                f"{proc.url}/openapi.json",
                "--header",
                f"Authorization: Bearer {token}",
                "--checks",
                CHECKS,
                "--max-examples",
                str(MAX_EXAMPLES),
                "--generation-deterministic",
                "--request-timeout",
                "10",
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        proc.stop()
    assert result.returncode == 0, result.stdout[-6000:]
    assert "api.unhandled_error" not in proc.log, proc.log[-4000:]
