"""Resolves a URL's host and applies the allowlist: SSRF protection for targets and webhooks."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass

from campaignd.domain.errors import RuleViolation
from campaignd.domain.targets import Allowlist, check_resolved, parse_target_url


@dataclass(frozen=True)
class CheckedTarget:
    """A URL the allowlist let through, with the addresses the check resolved its host to.

    `addresses` is empty when the host is allowed by name: the operator trusts that name
    wherever it points, so it is resolved when connecting. Otherwise connections must go to
    these addresses only, so the name cannot be re-pointed (DNS rebinding) after the check.
    """

    base: str
    addresses: tuple[str, ...]


class TargetGuard:
    """Refuses URLs whose host is not allowed by name or resolves outside the allowed networks."""

    def __init__(self, allowlist: Allowlist) -> None:
        self.allowlist = allowlist

    async def resolve(self, host: str, port: int) -> list[str]:
        try:
            ipaddress.ip_address(host)
            return [host]
        except ValueError:
            pass
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout=5
            )
        except (OSError, TimeoutError, UnicodeError, ValueError):
            # An unresolvable or malformed name (e.g. a label over 63 characters) allows nothing.
            return []
        # The system's preference order, as a connection by name would try them.
        return list(dict.fromkeys(str(info[4][0]) for info in infos))

    async def check(self, url: str, field: str = "target_url") -> str:
        """Return the normalized URL, or raise RuleViolation naming the field."""
        return (await self.check_target(url, field)).base

    async def check_target(self, url: str, field: str = "target_url") -> CheckedTarget:
        """The normalized URL and the addresses to connect to, or RuleViolation naming the field."""
        target = parse_target_url(url, field)
        addresses = await self._check(url, target.host, target.port, field)
        return CheckedTarget(target.base, addresses)

    async def check_host(self, host: str, port: int, field: str = "config.host") -> None:
        """Raise RuleViolation naming the field unless `host` (a name or an IP) is allowed."""
        host = host.strip().strip("[]")
        if not host:
            raise RuleViolation(f"Field '{field}' has no host.", field=field)
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        await self._check(shown, host, port, field)

    async def _check(self, shown: str, host: str, port: int, field: str) -> tuple[str, ...]:
        """The addresses to connect to (none when the host is allowed by name)."""
        if self.allowlist.allows_name(host):
            return ()
        addresses = await self.resolve(host, port)
        if not addresses:
            raise RuleViolation(
                f"The host of '{shown}' could not be resolved.", field=field, host=host
            )
        check_resolved(self.allowlist, shown, host, addresses, field)
        return tuple(addresses)
