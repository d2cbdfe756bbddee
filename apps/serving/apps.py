from django.apps import AppConfig


class ServingConfig(AppConfig):
    name = "apps.serving"
    label = "serving"
    verbose_name = "Serving"

    def ready(self) -> None:
        # Imported here, not at the top: they import models, which Django readies only now.
        from apps.fleet import holdings
        from apps.fleet.signals import node_offline
        from apps.models.signals import version_moving
        from apps.serving import ledger, receivers, sections
        from apps.serving.worker import worker  # noqa: F401  (connects the worker start/stop receivers)

        holdings.register(ledger.LedgerHoldings())
        sections.register_all()
        node_offline.connect(receivers.node_offline, dispatch_uid="moc-serving-node-offline")
        version_moving.connect(receivers.version_moving, dispatch_uid="moc-serving-version-moving")
