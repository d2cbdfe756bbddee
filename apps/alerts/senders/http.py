"""One HTTP POST of a notification: no redirects followed, the failure said in a line."""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from apps.alerts.senders import ERROR_CHARS, Outcome

USER_AGENT = "MOC"


def post(url: str, body: bytes, *, headers: Mapping[str, str], timeout_s: float) -> Outcome:
    """POST `body` to `url`: a 2xx answer is delivered; anything else (a redirect too: a
    notification is not sent on to wherever a receiver points) says what came back."""
    try:
        response = httpx.post(
            url,
            content=body,
            headers={"User-Agent": USER_AGENT, **headers},
            timeout=timeout_s,
            follow_redirects=False,
        )
    except httpx.ConnectError as exc:
        return Outcome(ok=False, error=f"could not connect: {exc}"[:ERROR_CHARS])
    except httpx.TimeoutException:
        return Outcome(ok=False, error=f"no answer within {timeout_s:g} s")
    except httpx.HTTPError as exc:
        return Outcome(ok=False, error=f"{type(exc).__name__}: {exc}"[:ERROR_CHARS])
    if response.is_success:
        return Outcome(ok=True, status=response.status_code)
    text = response.text[:ERROR_CHARS]
    return Outcome(ok=False, status=response.status_code, error=f"HTTP {response.status_code}: {text}")
