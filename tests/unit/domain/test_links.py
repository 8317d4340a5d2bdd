"""Tracked-link rules: which links are found, how they are rewritten, and signed tokens."""

from __future__ import annotations

import hashlib
import hmac

from hypothesis import given
from hypothesis import strategies as st

from campaignd.domain import links

KEY = b"k" * 32


def sign(text: str) -> str:
    return hmac.new(KEY, text.encode(), hashlib.sha256).hexdigest()[:24]


def verify(text: str, signature: str) -> bool:
    return hmac.compare_digest(sign(text), signature)


def test_links_are_found_without_trailing_punctuation_or_quotes() -> None:
    text = (
        'See https://a.test/x?y=1&z=2. Or (http://b.test/p), <a href="https://c.test/q">c</a>; '
        "again https://a.test/x?y=1&z=2! and https://base.test/unsubscribe/1"
    )
    assert links.find_links(text, skip_prefix="https://base.test/") == [
        "https://a.test/x?y=1&z=2",
        "http://b.test/p",
        "https://c.test/q",
    ]


def test_rewrite_replaces_each_link_in_place() -> None:
    text = "Go https://a.test/1, then https://b.test/2."
    out = links.rewrite(text, lambda url: None if "b.test" in url else "[L]")
    assert out == "Go [L], then https://b.test/2."


def test_a_token_round_trips_and_binds_every_field() -> None:
    token = links.LinkToken(7, 42, 3, "B variant/ü")
    text = links.encode_token(token, sign)
    assert links.decode_token(text, verify) == token
    assert links.decode_token(links.encode_token(links.LinkToken(7, 42, 3, None), sign), verify)
    payload, _, signature = text.rpartition(".")
    fields = payload.split(".")
    for index in range(3):
        changed = list(fields)
        changed[index] = str(int(changed[index]) + 1)
        assert links.decode_token(".".join(changed) + "." + signature, verify) is None
    assert links.decode_token(payload + ".vQQ." + signature, verify) is None
    assert links.decode_token("garbage", verify) is None
    assert links.decode_token("", verify) is None


@given(
    st.integers(1, 2**53),
    st.integers(0, 2**53),
    st.integers(1, 2**53),
    st.one_of(st.none(), st.text(max_size=100)),
)
def test_any_token_round_trips(campaign: int, contact: int, link: int, variant: str | None) -> None:
    token = links.LinkToken(campaign, contact, link, variant)
    assert links.decode_token(links.encode_token(token, sign), verify) == token


@given(st.text(max_size=300))
def test_no_text_decodes_without_a_valid_signature(text: str) -> None:
    assert links.decode_token(text, lambda _t, _s: False) is None
