"""The tasks other modules send to a worker, by name (see apps.core.dispatch): the senders need
not import apps.jobs.tasks, which imports them."""

JOB_RUN = "apps.jobs.tasks.job_run"
JOBS_DISPATCH = "apps.jobs.tasks.jobs_dispatch"
