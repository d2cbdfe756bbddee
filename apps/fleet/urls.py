from django.urls import path

from apps.fleet import views

app_name = "fleet"

urlpatterns = [
    path("", views.DeviceListView.as_view(), name="devices"),
    path("nodes/<int:pk>/", views.NodeDetailView.as_view(), name="node"),
    path("devices/live/", views.devices_live, name="devices_live"),
    path("devices/<int:pk>/", views.DeviceDetailView.as_view(), name="device"),
]
