"""Websocket routes of every app, gathered under /ws/."""

from apps.alerts.routing import websocket_urlpatterns as alerts_ws
from apps.core.routing import websocket_urlpatterns as core_ws
from apps.deployments.routing import websocket_urlpatterns as deployments_ws
from apps.fleet.routing import websocket_urlpatterns as fleet_ws
from apps.jobs.routing import websocket_urlpatterns as jobs_ws

websocket_urlpatterns = [*core_ws, *fleet_ws, *deployments_ws, *jobs_ws, *alerts_ws]
