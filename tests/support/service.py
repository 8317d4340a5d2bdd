"""The real campaignd server as a child process, started, killed and restarted by tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from support.net import free_port

CAMPAIGND = str(Path(sys.executable).with_name("campaignd"))
STOP_TIMEOUT = 15.0
READY_POLL_SECONDS = 0.02


@dataclass(frozen=True)
class Stop:
    """How long one `stop()` took from SIGTERM to exit; `killed` past STOP_TIMEOUT."""

    test: str
    seconds: float
    killed: bool


# Every stop of this session, for the summary at the end (conftest.py).
STOPS: list[Stop] = []


class ServiceProcess:
    """`campaignd serve` (optionally `--no-engine`) or `campaignd worker` (`command="worker"`)."""

    def __init__(
        self,
        database_url: str,
        log_path: Path,
        *,
        command: str = "serve",
        args: tuple[str, ...] = (),
        name: str | None = None,
        **env: str,
    ) -> None:
        self.database_url = database_url
        self.log_path = log_path
        self.command = command
        self.args = args
        self.name = name
        self.env = env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.token = env.get("CAMPAIGND_API_TOKEN")

    def start(self, timeout: float = 20.0) -> ServiceProcess:
        return self.launch().wait_ready(timeout)

    def launch(self) -> ServiceProcess:
        """Start the process without waiting for it (see wait_ready): several start at once."""
        env = {**os.environ, "CAMPAIGND_DATABASE_URL": self.database_url, **self.env}
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it
        argv = [CAMPAIGND, self.command, *self.args]
        if self.command == "serve":
            argv += ["--port", str(self.port)]
        if self.name:
            argv += ["--name", self.name]
        self.process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        return self

    def wait_ready(self, timeout: float = 20.0) -> ServiceProcess:
        """Until `serve` answers /healthz, or a `worker` has logged node.started."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=0.5) as probe:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"campaignd exited early:\n{self.log[-3000:]}")
                if self._ready(probe):
                    return self
                time.sleep(READY_POLL_SECONDS)
        raise RuntimeError(f"campaignd did not become healthy:\n{self.log[-3000:]}")

    def _ready(self, probe: httpx.Client) -> bool:
        if self.command == "worker":
            return '"node.started"' in self.log
        try:
            return probe.get(self.url + "/healthz").status_code == 200
        except httpx.HTTPError:
            return False

    def client(self, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10, **kwargs)

    def signal(self, sig: signal.Signals) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        return self.process.wait(timeout=30)

    def send(self, sig: signal.Signals) -> None:
        """Send a signal without waiting (SIGSTOP, SIGCONT)."""
        assert self.process is not None
        self.process.send_signal(sig)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            started = time.monotonic()
            self.process.send_signal(signal.SIGCONT)  # a test may have left it stopped
            self.process.terminate()
            killed = False
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                killed = True
            test = os.environ.get("PYTEST_CURRENT_TEST", "?").rsplit(" ", 1)[0]
            STOPS.append(
                Stop(f"{test} ({self.name or self.command})", time.monotonic() - started, killed)
            )

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")
