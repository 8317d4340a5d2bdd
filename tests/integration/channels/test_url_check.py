"""A webhook's URL is checked against the allowlist before its first send, then trusted."""

from __future__ import annotations

from campaignd.domain.errors import RuleViolation
from campaignd.messaging.channels import build_channel, validate_account_config
from campaignd.messaging.channels.base import OutgoingMessage
from support.target import CountingTarget


def _message(i: int) -> OutgoingMessage:
    return OutgoingMessage(
        campaign_id=1, contact_id=i, external_id=f"u{i}", address=f"u{i}@example.test", text="hi"
    )


async def test_webhook_checks_its_url_once_and_refuses_without_sending(
    target: CountingTarget,
) -> None:
    url = f"{target.url}/hook"
    checked: list[str] = []

    async def allow(candidate: str) -> None:
        checked.append(candidate)

    async def refuse(candidate: str) -> None:
        checked.append(candidate)
        raise RuleViolation(f"{candidate} resolves outside the allowed targets.")

    config = validate_account_config("webhook", {"url": url})
    allowed = build_channel("webhook", config, url_guard=allow)
    results = [await allowed.send(_message(i)) for i in range(3)]
    await allowed.close()
    assert all(r.ok for r in results)
    assert checked == [url] and target.total == 3

    checked.clear()
    refused = build_channel("webhook", config, url_guard=refuse)
    results = [await refused.send(_message(i)) for i in range(2)]
    await refused.close()
    assert [(r.ok, r.attempts) for r in results] == [(False, 0), (False, 0)]
    assert "resolves outside the allowed targets" in (results[0].error or "")
    assert checked == [url, url]  # a refusal is not remembered as a pass
    assert target.total == 3
