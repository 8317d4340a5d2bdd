"""The channel an account sends through, built from its config and its sealed secrets."""

from __future__ import annotations

from typing import Any

from campaignd.engine.guard import TargetGuard
from campaignd.messaging.channels import build_channel
from campaignd.messaging.channels.base import Channel
from campaignd.settings import Settings
from campaignd.store.secrets import SecretBox


def account_channel(
    account: dict[str, Any], box: SecretBox | None, guard: TargetGuard, settings: Settings
) -> Channel:
    config = {**account["config"], **(box.open(account["secrets"]) if box else {})}
    return build_channel(
        account["channel"],
        config,
        url_guard=lambda url: guard.check(url, field="config.url"),
        host_guard=lambda host, port: guard.check_host(host, port),
        log_dir=settings.channel_log_dir(),
    )
