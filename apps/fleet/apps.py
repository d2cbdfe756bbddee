from django.apps import AppConfig


class FleetConfig(AppConfig):
    name = "apps.fleet"
    label = "fleet"

    def ready(self) -> None:
        # Imported here, not at the top: it imports models, which Django readies only now.
        from apps.fleet import agent  # noqa: F401  (connects the worker start/stop receivers)
