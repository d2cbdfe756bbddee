"""The dataset tasks, by name, for the modules that send them (apps.core.dispatch): the services
here are what the tasks call, so they send them by name rather than importing apps.jobs.tasks."""

DATASETS_SCAN = "apps.jobs.tasks.datasets_scan"
DATASET_VALIDATE = "apps.jobs.tasks.dataset_validate"
