"""Channel registry: what each kind needs, which fields are secret, and how to build one."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from campaignd.domain.errors import InvalidInput
from campaignd.messaging.channels import log, smtp, telegram, webhook
from campaignd.messaging.channels.base import Channel, ChannelSpec, HostGuard, UrlGuard

CHANNEL_SPECS: dict[str, ChannelSpec] = {
    spec.kind: spec for spec in (webhook.SPEC, log.SPEC, smtp.SPEC, telegram.SPEC)
}
SECRET_MASK = "***"
_NUMBERS = {"timeout_seconds", "retry_base_seconds", "port", "max_attempts", "connections"}
_FLAGS = {"starttls", "use_tls", "validate_certs"}
# How the account form names each setting, so a refusal reads like the form.
CONFIG_LABELS = {
    "url": "URL",
    "signing_secret": "Signing secret",
    "host": "Host",
    "port": "Port",
    "from": "From address",
    "username": "Username",
    "password": "Password",
    "ca_cert": "CA certificate",
    "path": "File path",
    "bot_token": "Bot token",
    "api_base_url": "API base URL",
    "timeout_seconds": "Timeout",
    "max_attempts": "Attempts",
    "retry_base_seconds": "Retry delay",
}
CHANNEL_NAMES = {
    "webhook": "a webhook",
    "smtp": "an SMTP",
    "telegram": "a Telegram",
    "log": "a log",
}


def _label(name: str) -> str:
    return CONFIG_LABELS.get(name, name.replace("_", " ").capitalize())


def default_smtp_port(config: dict[str, Any]) -> int:
    """The port an SMTP account means when it gives none: 465 for TLS, 587 for STARTTLS."""
    if config.get("use_tls"):
        return 465
    return 587 if config.get("starttls") else 25


def spec_for(kind: str) -> ChannelSpec:
    try:
        return CHANNEL_SPECS[kind]
    except KeyError:
        raise InvalidInput(
            f"Unknown channel '{kind}'.", field="channel", allowed=sorted(CHANNEL_SPECS)
        ) from None


def secret_fields(kind: str) -> frozenset[str]:
    return spec_for(kind).secret


def validate_account_config(kind: str, config: Any, *, partial: bool = False) -> dict[str, Any]:
    """The normalized config, or InvalidInput naming the first field that is wrong."""
    spec = spec_for(kind)
    if not isinstance(config, dict):
        raise InvalidInput("Settings must be an object of named values.", field="config")
    known = spec.required | spec.optional
    for name in config:
        if name not in known:
            raise InvalidInput(
                f"'{name}' is not a setting of {CHANNEL_NAMES.get(kind, kind)} account.",
                field=f"config.{name}",
                allowed=sorted(known),
            )
    if not partial:
        if kind == "smtp" and config.get("port") in (None, ""):
            config = {**config, "port": default_smtp_port(config)}
        for name in sorted(spec.required):
            if config.get(name) in (None, ""):
                raise InvalidInput(
                    f"{_label(name)} is required for {CHANNEL_NAMES.get(kind, kind)} account.",
                    field=f"config.{name}",
                )
    result = {**({} if partial else spec.defaults), **config}
    for name, value in config.items():
        field = f"config.{name}"
        if name in _NUMBERS:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise InvalidInput(f"{_label(name)} must be a positive number.", field=field)
        elif name in _FLAGS:
            if not isinstance(value, bool):
                raise InvalidInput(f"{_label(name)} must be yes or no.", field=field)
        elif not isinstance(value, str):
            raise InvalidInput(f"{_label(name)} must be text.", field=field)
    if "port" in config and not 1 <= int(config["port"]) <= 65535:
        raise InvalidInput("Port must be between 1 and 65535.", field="config.port")
    if config.get("ca_cert"):
        try:
            smtp.check_ca_cert(config["ca_cert"])
        except ValueError as exc:
            raise InvalidInput(
                f"CA certificate must be one or more PEM certificates ({exc}).",
                field="config.ca_cert",
            ) from None
    for name in ("url", "api_base_url"):
        if name in config:
            parts = urlsplit(str(config[name]))
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise InvalidInput(
                    f"{_label(name)} must be a web address starting with http:// or https://.",
                    field=f"config.{name}",
                )
    return result


def redact(kind: str, config: dict[str, Any]) -> dict[str, Any]:
    """The config with every secret replaced by '***'."""
    secrets = secret_fields(kind)
    return {k: (SECRET_MASK if k in secrets and v else v) for k, v in config.items()}


def build_channel(
    kind: str,
    config: dict[str, Any],
    *,
    url_guard: UrlGuard | None = None,
    host_guard: HostGuard | None = None,
    log_dir: Path | None = None,
) -> Channel:
    """A channel for one account; the guards check its destination before the first send."""
    if kind == "webhook":
        return webhook.WebhookChannel(config, url_guard)
    if kind == "log":
        if log_dir is None:
            raise ValueError("a log channel needs its directory (Settings.channel_log_dir)")
        return log.LogChannel(config, log_dir)
    if kind == "smtp":
        return smtp.SmtpChannel(config, host_guard)
    if kind == "telegram":
        return telegram.TelegramChannel(config, url_guard)
    raise InvalidInput(f"Unknown channel '{kind}'.", field="channel")
