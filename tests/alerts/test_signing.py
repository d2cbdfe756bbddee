"""Webhook bodies signed with HMAC-SHA256 (pure)."""

from __future__ import annotations

from apps.alerts.domain.signing import sign, verify

SECRET = "0123456789abcdef-secret"


def test_a_signature_verifies() -> None:
    header = sign(SECRET, b'{"a":1}', 1_700_000_000)

    assert header.startswith("t=1700000000,v1=")
    assert verify(SECRET, b'{"a":1}', header, now=1_700_000_010)


def test_a_tampered_body_a_wrong_secret_or_an_old_signature_fail() -> None:
    header = sign(SECRET, b'{"a":1}', 1_700_000_000)

    assert not verify(SECRET, b'{"a":2}', header, now=1_700_000_000)
    assert not verify("another-secret-of-16", b'{"a":1}', header, now=1_700_000_000)
    assert not verify(SECRET, b'{"a":1}', header, now=1_700_000_000 + 3600)
    assert not verify(SECRET, b'{"a":1}', header.replace("t=1700000000", "t=1700000001"), now=1_700_000_000)
    assert not verify(SECRET, b'{"a":1}', "garbage", now=1_700_000_000)
