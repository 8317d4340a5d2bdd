"""Tracked links: which links a message carries, how they are rewritten, and signed tokens.

A token names the campaign, the contact, the variant and the stored link's id, signed with
the service's key, so a redirect can only ever lead to a link that was in a message.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass

# An http(s) link ends at whitespace, a quote, angle brackets or parentheses; trailing
# sentence punctuation ("see https://x.test/a.") is not part of it.
_LINK = re.compile(r"https?://[^\s<>\"'()\[\]{}`]+", re.IGNORECASE)
_TRAILING = ".,;:!?"
TEST_CONTACT = 0  # the contact id in a test send's links: the redirect works, nothing counts
MAX_URL_LENGTH = 4000

Signer = Callable[[str], str]
Verifier = Callable[[str, str], bool]


@dataclass(frozen=True, slots=True)
class LinkToken:
    campaign_id: int
    contact_id: int
    link_id: int
    variant: str | None


def spans(text: str) -> list[tuple[int, int]]:
    """Where the http(s) links of `text` start and end."""
    spans = []
    for match in _LINK.finditer(text):
        start, end = match.span()
        while end > start and text[end - 1] in _TRAILING:
            end -= 1
        if end - start <= MAX_URL_LENGTH:
            spans.append((start, end))
    return spans


def find_links(
    text: str, skip_prefix: str | None = None, found: list[tuple[int, int]] | None = None
) -> list[str]:
    """The distinct http(s) links in `text`, in order; those under `skip_prefix` are ours.
    `found`: the text's spans(), when the caller has them already."""
    seen: dict[str, None] = {}
    for start, end in spans(text) if found is None else found:
        url = text[start:end]
        if skip_prefix and url.startswith(skip_prefix):
            continue
        seen.setdefault(url, None)
    return list(seen)


def rewrite(
    text: str,
    replacement: Callable[[str], str | None],
    found: list[tuple[int, int]] | None = None,
) -> str:
    """`text` with each link replaced by replacement(link); None keeps the link as it is."""
    parts: list[str] = []
    last = 0
    for start, end in spans(text) if found is None else found:
        new = replacement(text[start:end])
        if new is None:
            continue
        parts.append(text[last:start])
        parts.append(new)
        last = end
    parts.append(text[last:])
    return "".join(parts)


def url_hash(url: str) -> str:
    return hashlib.sha256(url.encode("utf-8", errors="surrogatepass")).hexdigest()


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _unb64(text: str) -> str:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()


def encode_token(token: LinkToken, sign: Signer) -> str:
    """campaign.contact.link.variant.signature, URL-safe."""
    variant = "" if token.variant is None else "v" + _b64(token.variant)
    payload = f"{token.campaign_id}.{token.contact_id}.{token.link_id}.{variant}"
    return f"{payload}.{sign('link:' + payload)}"


def decode_token(text: str, verify: Verifier) -> LinkToken | None:
    """The token's content if its signature holds; None for anything forged or malformed."""
    payload, _, signature = text.rpartition(".")
    if not payload or not signature or len(text) > 1000:
        return None
    if not verify("link:" + payload, signature):
        return None
    fields = payload.split(".")
    if len(fields) != 4 or not all(f.isdigit() for f in fields[:3]):
        return None
    try:
        variant = _unb64(fields[3][1:]) if fields[3] else None
    except (ValueError, UnicodeDecodeError):
        return None
    return LinkToken(int(fields[0]), int(fields[1]), int(fields[2]), variant)
