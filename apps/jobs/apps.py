from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "apps.jobs"
    label = "jobs"

    def ready(self) -> None:
        from apps.jobs.holdings import JOBS  # models are ready only now
        from apps.serving import ledger

        ledger.register(JOBS)
