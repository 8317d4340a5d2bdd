"""How many sockets the load generator may hold open in this process: its connection budget.

Every socket the generator opens takes a file descriptor from the table it shares with the
API and the database pool (an in-process runner) or with nothing else (a worker process).
A target that accepts and never answers would otherwise pin one descriptor per user until
`accept()` and the database fail with "too many open files". The budget is the fd limit
minus a reserve; a generator never opens a socket without a slot from it, and every campaign
in a process draws on the one budget. The event loop is the only user, so plain counters do.
"""

from __future__ import annotations

import functools
import resource
from pathlib import Path

# Kept for the API's connections, the database pool, logs and pipes.
RESERVE_FRACTION = 0.25
MIN_RESERVE = 256
# Connections to one target share the ephemeral port range, of which Linux gives connect()
# the even half first: once that half fills, every connect() walks it in the kernel before
# trying the odd one, and a loop doing thousands of them stops answering for seconds.
# A campaign may hold this much of the whole range, well inside the even half.
PORT_SHARE = 0.4
DEFAULT_EPHEMERAL_PORTS = 60999 - 32768 + 1


class ConnectionBudget:
    """Slots for open sockets: taken before a connect, given back when the socket closes."""

    __slots__ = ("limit", "open")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0

    @property
    def exhausted(self) -> bool:
        return self.open >= self.limit

    def try_acquire(self) -> bool:
        if self.open >= self.limit:
            return False
        self.open += 1
        return True

    def release(self) -> None:
        self.open -= 1


def budget_for(fd_limit: int) -> int:
    """Sockets allowed under an fd limit: the limit minus max(MIN_RESERVE, 25 %)."""
    return max(0, fd_limit - max(MIN_RESERVE, int(fd_limit * RESERVE_FRACTION)))


def port_budget() -> int:
    """Connections one campaign may hold to its target: PORT_SHARE of the ephemeral range."""
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        low, high = (int(part) for part in text.split())
        ports = high - low + 1
    except (OSError, ValueError):
        ports = DEFAULT_EPHEMERAL_PORTS
    return int(ports * PORT_SHARE)


def raise_fd_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit; return the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


@functools.cache
def process_budget() -> ConnectionBudget:
    """The one budget of this process, sized when the first generator starts."""
    return ConnectionBudget(min(budget_for(raise_fd_limit()), port_budget()))


def worker_process_budget(workers: int) -> ConnectionBudget:
    """The budget of a worker process, one of `workers` sharing a campaign's ports."""
    budget = process_budget()
    budget.limit = min(budget.limit, port_budget() // workers)
    return budget
