"""The registry's tasks, by name, for the modules that send them (see apps.core.dispatch): the
scanning package is what the tasks call, so it sends them by name rather than importing them."""

REGISTRY_SCAN = "apps.models.tasks.registry_scan"
REGISTRY_CHECKSUM = "apps.models.tasks.registry_checksum"
REGISTRY_VALIDATE = "apps.models.tasks.registry_validate"
REGISTRY_SCAN_PERIODIC = "apps.models.tasks.registry_scan_periodic"
