from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "apps.jobs"
    label = "jobs"

    def ready(self) -> None:
        # Imported here, not at the top: they import models, which Django readies only now.
        from apps.jobs import live, receivers
        from apps.jobs.holdings import JOBS
        from apps.serving import ledger
        from apps.serving.signals import room_wanted

        ledger.register(JOBS)
        live.connect()
        room_wanted.connect(receivers.room_wanted, dispatch_uid="moc-jobs-room-wanted")
