"""The allowlist: only loopback by default; names must resolve inside the allowed networks."""

from __future__ import annotations

import pytest

from campaignd.domain.errors import RuleViolation
from campaignd.domain.targets import Allowlist, check_resolved, parse_target_url
from campaignd.settings import DEFAULT_ALLOWED_TARGETS

DEFAULT = Allowlist.parse(DEFAULT_ALLOWED_TARGETS)


@pytest.mark.parametrize("address", ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"])
def test_loopback_is_allowed_by_default(address: str) -> None:
    assert DEFAULT.allows_address(address)


@pytest.mark.parametrize(
    "address", ["10.0.0.1", "192.168.1.1", "172.16.0.1", "8.8.8.8", "0.0.0.0", "::ffff:10.0.0.1"]
)
def test_everything_else_is_refused_by_default(address: str) -> None:
    assert not DEFAULT.allows_address(address)


def test_a_name_resolving_outside_the_allowlist_is_refused() -> None:
    with pytest.raises(RuleViolation) as info:
        check_resolved(DEFAULT, "http://evil.test", "evil.test", ["127.0.0.1", "10.1.2.3"])
    assert info.value.context["resolved"] == ["10.1.2.3"]


def test_a_name_resolving_only_to_loopback_is_allowed() -> None:
    check_resolved(DEFAULT, "http://box.test", "box.test", ["127.0.0.1"])


def test_name_patterns() -> None:
    allow = Allowlist.parse("*.staging.example.com, 10.20.0.0/16")
    assert allow.allows_name("api.staging.example.com")
    assert not allow.allows_name("api.prod.example.com")
    assert allow.allows_address("10.20.3.4")


@pytest.mark.parametrize(
    "url",
    ["ftp://127.0.0.1/", "127.0.0.1:80", "http://", "http://user:pw@127.0.0.1/", "http://[::1"],
)
def test_malformed_or_non_http_urls_are_refused(url: str) -> None:
    with pytest.raises(RuleViolation):
        parse_target_url(url)
