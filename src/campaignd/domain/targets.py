"""Which hosts the service may send to: the allowlist rule, free of I/O."""

from __future__ import annotations

import fnmatch
import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from campaignd.domain.errors import RuleViolation

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Allowlist:
    """Networks (CIDR) and host-name patterns that targets may point at."""

    networks: tuple[IPNetwork, ...]
    names: tuple[str, ...]

    @classmethod
    def parse(cls, spec: str) -> Allowlist:
        networks: list[IPNetwork] = []
        names: list[str] = []
        for raw in spec.split(","):
            entry = raw.strip().lower()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                names.append(entry)
        return cls(tuple(networks), tuple(names))

    def allows_address(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.networks)

    def allows_name(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        return any(fnmatch.fnmatchcase(host, pattern) for pattern in self.names)

    def describe(self) -> str:
        return ", ".join([str(n) for n in self.networks] + list(self.names))


@dataclass(frozen=True)
class ParsedTarget:
    scheme: str
    host: str
    port: int
    base: str


def parse_target_url(url: str, field: str = "target_url") -> ParsedTarget:
    """Split an http(s) URL, refusing anything that is not one."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise RuleViolation(f"'{url}' is not a valid URL: {exc}.", field=field) from None
    if parts.scheme not in ("http", "https"):
        raise RuleViolation(f"'{url}' must use http or https.", field=field, value=url)
    if not parts.hostname:
        raise RuleViolation(f"'{url}' has no host.", field=field, value=url)
    if len(parts.hostname) > 253:
        raise RuleViolation(
            f"The host of '{url[:80]}...' is longer than 253 characters.", field=field
        )
    if parts.username or parts.password:
        raise RuleViolation(f"'{url}' must not carry credentials.", field=field)
    default_port = 443 if parts.scheme == "https" else 80
    return ParsedTarget(
        scheme=parts.scheme,
        host=parts.hostname,
        port=port or default_port,
        base=url.strip().rstrip("/"),
    )


def check_resolved(
    allowlist: Allowlist, url: str, host: str, addresses: list[str], field: str = "target_url"
) -> None:
    """Refuse the URL unless its host is allowed by name or every address it resolves to is."""
    if allowlist.allows_name(host):
        return
    if addresses and all(allowlist.allows_address(a) for a in addresses):
        return
    forbidden = [a for a in addresses if not allowlist.allows_address(a)]
    raise RuleViolation(
        f"Target '{url}' is not in the allowed targets ({allowlist.describe()}); "
        "set CAMPAIGND_ALLOWED_TARGETS to allow it.",
        field=field,
        host=host,
        resolved=forbidden or addresses,
    )
