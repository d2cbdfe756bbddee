"""What a verification run checks, and how a check can come out (pure Python)."""

from enum import StrEnum

from apps.core.domain import tones


class CheckName(StrEnum):
    HEALTH = "health"  # the placement answers a probe inference
    AVAILABILITY = "availability"  # every replica placed and healthy
    API_ENDPOINT = "api_endpoint"  # a real request through the public endpoint
    DATABASE = "database"
    PERFORMANCE = "performance"  # against the version's benchmark and the stable release
    SECURITY = "security"  # checksums, no pickle, the endpoint requires auth
    INTEGRATIONS = "integrations"  # broker, channel layer, notification channels
    MONITORING = "monitoring"  # the deployment's metrics are exported
    ROLLBACK = "rollback"  # the previous release is still loadable (or resident)
    QUALITY = "quality"  # output on a small golden set


CHECK_NAME_CHOICES = [
    (CheckName.HEALTH.value, "Health"),
    (CheckName.AVAILABILITY.value, "Availability"),
    (CheckName.API_ENDPOINT.value, "API endpoint"),
    (CheckName.DATABASE.value, "Database"),
    (CheckName.PERFORMANCE.value, "Performance"),
    (CheckName.SECURITY.value, "Security"),
    (CheckName.INTEGRATIONS.value, "Integrations"),
    (CheckName.MONITORING.value, "Monitoring"),
    (CheckName.ROLLBACK.value, "Rollback"),
    (CheckName.QUALITY.value, "Quality"),
]


class CheckStatus(StrEnum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


CHECK_STATUS_CHOICES = [(s.value, s.value.capitalize()) for s in CheckStatus]
tones.declare({CheckStatus.PASS: "ok", CheckStatus.WARN: "warn", CheckStatus.FAIL: "bad"})


def all_check_names() -> list[str]:
    """Every check, in the order a run makes them: the default of a deployment's required checks."""
    return [c.value for c in CheckName]
