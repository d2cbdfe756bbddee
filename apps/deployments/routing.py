from django.urls import path

from apps.deployments import consumers

websocket_urlpatterns = [
    path("ws/deployments/<slug:name>/", consumers.DeploymentConsumer.as_asgi()),
]
