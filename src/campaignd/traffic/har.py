"""`campaignd traffic import-har`: a browser's HAR recording as a journey scenario.

Like k6's and Locust's HAR converters: one step per recorded request, in the recorded order,
with its method, path and query, headers a load test should replay, body, and a check on the
recorded status. Static assets (scripts, styles, images, fonts, media) are left out unless
asked for; so are requests to other hosts than the first one's (or the ones named).
Cookies are not copied: each virtual user keeps its own jar, from the answers it gets.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from campaignd.domain.errors import RuleViolation
from campaignd.domain.http_rules import FRAMING_HEADERS, HttpRuleError, normalize_path

MAX_STEPS = 100
STATIC_EXTENSIONS = frozenset(
    [
        "css",
        "js",
        "mjs",
        "map",
        "png",
        "jpg",
        "jpeg",
        "gif",
        "svg",
        "ico",
        "webp",
        "avif",
        "bmp",
        "woff",
        "woff2",
        "ttf",
        "otf",
        "eot",
        "mp4",
        "webm",
        "mp3",
        "ogg",
        "wav",
    ]
)
STATIC_TYPES = ("image/", "font/", "audio/", "video/", "text/css", "javascript")
# Headers a replay must not copy: the client sets them, they belong to the browser's session
# or transport, or they would ask for an encoding the lean client does not decode.
SKIPPED_HEADERS = FRAMING_HEADERS | {
    "host",
    "cookie",
    "connection",
    "keep-alive",
    "accept-encoding",
    "content-length",
    "upgrade-insecure-requests",
    "priority",
    "te",
}


class HarError(RuleViolation):
    """Raised when a HAR file cannot be read or holds no request to replay."""


def _is_static(entry: dict[str, Any], path: str) -> bool:
    extension = path.rsplit("/", 1)[-1].rpartition(".")[2].lower() if "." in path else ""
    if extension in STATIC_EXTENSIONS:
        return True
    mime = str(entry.get("response", {}).get("content", {}).get("mimeType", "")).lower()
    return any(kind in mime for kind in STATIC_TYPES)


def _headers(request: dict[str, Any]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for header in request.get("headers") or ():
        name = str(header.get("name", ""))
        if not name or name.startswith(":") or name.lower() in SKIPPED_HEADERS:
            continue
        if name.lower().startswith("sec-"):
            continue
        if any(n.lower() == name.lower() for n in headers):
            continue
        value = str(header.get("value", ""))
        if "{{" in value or "{%" in value or "\r" in value or "\n" in value:
            continue  # would be read as a template, or is not a header value
        headers[name] = value
    return headers


def _body(request: dict[str, Any]) -> Any:
    posted = request.get("postData")
    if not posted or posted.get("text") in (None, ""):
        return None
    text = str(posted["text"])
    if "json" in str(posted.get("mimeType", "")).lower():
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text


def _escape_templates(value: Any) -> Any:
    """Recorded text is data, never a template: `{{` becomes a literal."""
    if isinstance(value, str) and ("{{" in value or "{%" in value or "{#" in value):
        return "{% raw %}" + value + "{% endraw %}"
    if isinstance(value, dict):
        return {k: _escape_templates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escape_templates(v) for v in value]
    return value


def har_to_scenario(
    har: dict[str, Any],
    *,
    include_hosts: list[str] | None = None,
    include_static: bool = False,
    name: str = "recording",
    users: int = 10,
    rpm: float = 600.0,
    duration_minutes: float = 1.0,
) -> tuple[dict[str, Any], list[str]]:
    """The scenario (as a mapping for YAML) with one step per kept request, and notes on
    what was left out."""
    try:
        entries = list(har["log"]["entries"])
    except (KeyError, TypeError):
        raise HarError("The file is not a HAR recording (no log.entries).") from None
    entries.sort(key=lambda e: str(e.get("startedDateTime", "")))
    steps: list[dict[str, Any]] = []
    skipped = {"static": 0, "other hosts": 0, "unsendable path": 0}
    origin: str | None = None
    hosts = {h.lower() for h in include_hosts or ()}
    for entry in entries:
        request = entry.get("request") or {}
        url = urlsplit(str(request.get("url", "")))
        if url.scheme not in ("http", "https") or not url.hostname:
            continue
        if hosts and url.hostname.lower() not in hosts:
            skipped["other hosts"] += 1
            continue
        here = f"{url.scheme}://{url.netloc}"
        if origin is None:
            origin = here
        elif here != origin:
            skipped["other hosts"] += 1  # a scenario has one target
            continue
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        if not include_static and _is_static(entry, url.path):
            skipped["static"] += 1
            continue
        try:
            path = normalize_path(path)
        except HttpRuleError:
            skipped["unsendable path"] += 1
            continue
        method = str(request.get("method", "GET")).upper()
        step: dict[str, Any] = {
            "name": f"{len(steps) + 1:02d} {method} {url.path or '/'}"[:200],
            "method": method,
            "path": _escape_templates(path),
        }
        headers = _headers(request)
        if headers:
            step["headers"] = headers
        body = _body(request)
        if body is not None:
            step["body"] = _escape_templates(body)
        status = entry.get("response", {}).get("status")
        if isinstance(status, int) and 100 <= status <= 599:
            step["checks"] = [{"status": status}]
        steps.append(step)
    if not steps or origin is None:
        raise HarError("The recording holds no request to replay (after the filters).")
    notes = [f"skipped {n} request(s): {why}" for why, n in skipped.items() if n]
    if len(steps) > MAX_STEPS:
        notes.append(f"kept the first {MAX_STEPS} of {len(steps)} requests (a profile's limit)")
    scenario = {
        "name": name,
        "target": origin,
        "users": users,
        "rpm": rpm,
        "duration_minutes": duration_minutes,
        "profiles": [{"name": name, "steps": steps[:MAX_STEPS]}],
        "thresholds": ["checks > 0.99"],
    }
    return scenario, notes


def read_har(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise HarError(f"Cannot read {path}: {exc.strerror}.") from None
    except ValueError as exc:
        raise HarError(f"{path} is not JSON: {exc}.") from None
    if not isinstance(data, dict):
        raise HarError(f"{path} is not a HAR recording.")
    return data
