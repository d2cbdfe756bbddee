from django.apps import AppConfig


class DeploymentsConfig(AppConfig):
    name = "apps.deployments"
    label = "deployments"

    def ready(self) -> None:
        # Imported here, not at the top: they import models, which Django readies only now.
        from apps.deployments import receivers
        from apps.deployments.dataplane import invalidation
        from apps.models.signals import version_moving

        version_moving.connect(receivers.version_moving, dispatch_uid="moc-deployments-version-moving")
        invalidation.connect()
