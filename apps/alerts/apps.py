from django.apps import AppConfig


class AlertsConfig(AppConfig):
    name = "apps.alerts"
    label = "alerts"

    def ready(self) -> None:
        # Release verification's integrations check reaches the channels alerts knows; deployments,
        # a floor below, cannot ask alerts itself.
        from apps.alerts import live, receivers
        from apps.alerts.reachability import reach_channels
        from apps.deployments.verification import notifications

        notifications.register(reach_channels)
        # Event alerts: a job failed, a release rolled back, a node or a placement lost, ...
        receivers.connect()
        # The top bar's bell and toasts hear of every alert change once it committed.
        live.connect()
