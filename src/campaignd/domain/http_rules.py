"""What may go into a generated request's line and headers (RFC 9110/9112), free of I/O.

Used by the API schemas, the scenario loader and the request encoder alike, so a profile the
API accepts is exactly a profile the generator can send, byte for byte as written.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from urllib.parse import quote

# RFC 9110 5.6.2: token = 1*tchar.
TCHAR = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~")
# The generator frames each request itself (Content-Length from the body, keep-alive): a
# profile that set these would desynchronize the connection or smuggle a second request.
FRAMING_HEADERS = frozenset(
    {
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
    }
)
# RFC 3986 characters allowed as they are in a path and query (pchar, "/", "?") plus "%".
_PATH_CHARS = frozenset(string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@/?%")
_VISIBLE_ASCII = "".join(chr(c) for c in range(0x21, 0x7F))
_HEX = frozenset(string.hexdigits)


class HttpRuleError(ValueError):
    """Raised when a header or path could not be sent as given; the message is one sentence."""


def _is_control(char: str) -> bool:
    return ord(char) < 0x20 or ord(char) == 0x7F


def check_header_name(name: str) -> str:
    """The name if it is an RFC 9110 token and not one the generator must own."""
    if not name or any(c not in TCHAR for c in name):
        raise HttpRuleError(
            f"header name {name!r} must be a token (letters, digits and !#$%&'*+-.^_`|~; "
            "no spaces, colons or control characters)"
        )
    if name.lower() in FRAMING_HEADERS:
        raise HttpRuleError(
            f"header {name!r} is set by the generator itself (it frames every request); remove it"
        )
    return name


def check_header_value(name: str, value: str) -> str:
    """The value if it has no control characters (tabs inside are fine) and fits Latin-1."""
    if any(_is_control(c) and c != "\t" for c in value):
        raise HttpRuleError(f"the value of header {name!r} must not contain control characters")
    if value != value.strip(" \t"):
        raise HttpRuleError(
            f"the value of header {name!r} must not start or end with spaces or tabs"
        )
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise HttpRuleError(
            f"the value of header {name!r} has characters outside Latin-1; "
            "percent-encode or otherwise encode them"
        ) from None
    return value


def check_headers(headers: Mapping[str, str] | None) -> dict[str, str] | None:
    """Every name and value checked; names that differ only in case are refused as ambiguous."""
    if headers is None:
        return None
    seen: dict[str, str] = {}
    for name, value in headers.items():
        check_header_name(name)
        check_header_value(name, value)
        if name.lower() in seen:
            raise HttpRuleError(f"headers {seen[name.lower()]!r} and {name!r} are the same header")
        seen[name.lower()] = name
    return dict(headers)


def normalize_path(path: str, *, base: bool = False) -> str:
    """A valid origin-form request-target: non-ASCII percent-encoded (UTF-8), the rest refused.

    `base` allows the empty path of a target URL, which the request paths are appended to.
    """
    if base and path == "":
        return path
    if not path.startswith("/"):
        raise HttpRuleError("path must start with '/'")
    if any(c.isspace() or _is_control(c) for c in path):
        raise HttpRuleError(
            "path must not contain spaces, tabs, line breaks or control characters "
            "(percent-encode them, e.g. %20)"
        )
    if "#" in path:
        raise HttpRuleError("path must not contain '#' (a fragment is never sent)")
    encoded = quote(path, safe=_VISIBLE_ASCII)
    bad = sorted({c for c in encoded if c not in _PATH_CHARS})
    if bad:
        raise HttpRuleError(f"path has characters that must be percent-encoded: {' '.join(bad)}")
    for i, char in enumerate(encoded):
        if char == "%" and not (len(encoded) >= i + 3 and set(encoded[i + 1 : i + 3]) <= _HEX):
            raise HttpRuleError("path has a '%' that does not start a %XX escape")
    return encoded
