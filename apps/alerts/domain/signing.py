"""The signature of a webhook body, so a receiver can tell MOC sent it and when.

`X-MOC-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`, as Stripe signs:
the time is signed with the body, so a captured request cannot be replayed later than the
receiver's tolerance. A receiver recomputes the HMAC over the raw body it got (see `verify`).
"""

from __future__ import annotations

import hashlib
import hmac

HEADER = "X-MOC-Signature"
DEFAULT_TOLERANCE_S = 300


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The header value for `body` sent at `timestamp` (unix seconds)."""
    return f"t={timestamp},v1={_mac(secret, timestamp, body)}"


def verify(
    secret: str, body: bytes, header: str, *, now: int, tolerance_s: int = DEFAULT_TOLERANCE_S
) -> bool:
    """Whether `header` signs `body` with `secret`, made within `tolerance_s` of `now`. Compares
    in constant time."""
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    try:
        timestamp = int(parts.get("t", ""))
    except ValueError:
        return False
    if abs(now - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(_mac(secret, timestamp, body), parts.get("v1", ""))
