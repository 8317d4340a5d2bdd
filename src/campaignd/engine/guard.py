"""Resolves a URL's host and applies the allowlist: SSRF protection for targets and webhooks."""

from __future__ import annotations

import asyncio
import ipaddress
import socket

from campaignd.domain.errors import RuleViolation
from campaignd.domain.targets import Allowlist, check_resolved, parse_target_url


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
        return sorted({str(info[4][0]) for info in infos})

    async def check(self, url: str, field: str = "target_url") -> str:
        """Return the normalized URL, or raise RuleViolation naming the field."""
        target = parse_target_url(url, field)
        await self._check(url, target.host, target.port, field)
        return target.base

    async def check_host(self, host: str, port: int, field: str = "config.host") -> None:
        """Raise RuleViolation naming the field unless `host` (a name or an IP) is allowed."""
        host = host.strip().strip("[]")
        if not host:
            raise RuleViolation(f"Field '{field}' has no host.", field=field)
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        await self._check(shown, host, port, field)

    async def _check(self, shown: str, host: str, port: int, field: str) -> None:
        if self.allowlist.allows_name(host):
            return
        addresses = await self.resolve(host, port)
        if not addresses:
            raise RuleViolation(
                f"The host of '{shown}' could not be resolved.", field=field, host=host
            )
        check_resolved(self.allowlist, shown, host, addresses, field)
