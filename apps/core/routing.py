from django.urls import path

from apps.core import consumers

websocket_urlpatterns = [path("ws/activity/", consumers.ActivityConsumer.as_asgi())]
