from django.apps import AppConfig


class FleetConfig(AppConfig):
    name = "apps.fleet"
    label = "fleet"

    def ready(self) -> None:
        from apps.fleet import agent  # noqa: F401  (connects the worker start/stop receivers; imports models)
