"""ASGI entry point: websockets, and the data plane (HTTP under /v1/: the OpenAI-compatible API,
apps.deployments.dataplane). Every other HTTP path is served by gunicorn (WSGI); see
docs/ARCHITECTURE.md."""

import gc
import os
from collections.abc import Callable
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "moc_site.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from apps.deployments.dataplane import app as dataplane  # noqa: E402
from apps.fleet.consumers import SERVER_SEND_KEY  # noqa: E402
from moc_site.routing import websocket_urlpatterns  # noqa: E402

websockets = AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))


async def websocket_app(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
    """The websocket stack, with the server's own send kept in the scope for the telemetry
    relay (apps/fleet/consumers.py), which bypasses the session middleware's wrapper."""
    await websockets(dict(scope, **{SERVER_SEND_KEY: send}), receive, send)


async def http_app(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
    """The data plane for paths under /v1/ (raw ASGI: no Django request machinery on its path);
    anything else is Django, so that a stray HTTP request to the ASGI port still gets an answer
    (the reverse proxy sends only /ws/ and /v1/ here)."""
    if scope["path"].startswith(dataplane.PREFIX):
        await dataplane.app(scope, receive, send)
    else:
        await django_asgi_app(scope, receive, send)


application = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": websocket_app,
    }
)

# Everything loaded so far lives as long as the process: move it out of the garbage
# collector's sight. Otherwise each full collection walks all of Django's objects, and under
# a thousand telemetry clients those pauses (160-200 ms, every few seconds) were most of the
# websocket's p99 latency; frozen, they took 60-130 ms (bench/telemetry_fanout.py).
gc.collect()
gc.freeze()
