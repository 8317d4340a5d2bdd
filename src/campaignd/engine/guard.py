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
        if self.allowlist.allows_name(target.host):
            return target.base
        addresses = await self.resolve(target.host, target.port)
        if not addresses:
            raise RuleViolation(
                f"The host of '{url}' could not be resolved.", field=field, host=target.host
            )
        check_resolved(self.allowlist, url, target.host, addresses, field)
        return target.base
