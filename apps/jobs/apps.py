from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "apps.jobs"
    label = "jobs"

    def ready(self) -> None:
        # Imported here, not at the top: they import models, which Django readies only now.
        from apps.jobs import live
        from apps.jobs.holdings import JOBS
        from apps.serving import ledger

        ledger.register(JOBS)
        live.connect()
