from django.urls import path

from apps.serving import views

app_name = "serving"

urlpatterns = [
    path("placements/", views.PlacementListView.as_view(), name="placements"),
    path("placements/live/", views.placements_live, name="placements_live"),
    path("placements/<int:pk>/unload/", views.unload, name="unload"),
    path("placements/<int:pk>/pin/", views.pin, name="pin"),
    path("devices/", views.devices_section, name="devices_section"),
    path("devices/live/", views.devices_poller, name="devices_poller"),
    path("devices/<int:pk>/", views.device_section, name="device_section"),
    path("devices/<int:pk>/load/", views.device_load, name="device_load"),
    path("nodes/<int:pk>/", views.node_section, name="node_section"),
    path("versions/<int:pk>/", views.version_section, name="version_section"),
    path("versions/<int:pk>/load/", views.version_load, name="version_load"),
    path("versions/<int:pk>/try/", views.version_try, name="version_try"),
]
