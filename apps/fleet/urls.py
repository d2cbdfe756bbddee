from django.urls import path

from apps.fleet import views

app_name = "fleet"

urlpatterns = [
    path("", views.DeviceListView.as_view(), name="devices"),
    path("nodes/<int:pk>/", views.NodeDetailView.as_view(), name="node"),
    path("devices/<int:pk>/", views.DeviceDetailView.as_view(), name="device"),
    path("devices/<int:pk>/load/", views.device_load, name="device_load"),
    path("placements/", views.PlacementListView.as_view(), name="placements"),
    path("placements/live/", views.placements_live, name="placements_live"),
    path("placements/<int:pk>/unload/", views.unload, name="unload"),
    path("placements/<int:pk>/pin/", views.pin, name="pin"),
    path("versions/<int:pk>/load/", views.version_load, name="version_load"),
    path("versions/<int:pk>/try/", views.version_try, name="version_try"),
]
