from django.urls import path

from apps.alerts import consumers

websocket_urlpatterns = [
    path("ws/alerts/", consumers.AlertsConsumer.as_asgi()),
]
