"""The verification checks, one module each, in the order a run makes them (CheckName's)."""

from __future__ import annotations

from types import ModuleType

from apps.deployments.domain.checks import CheckName
from apps.deployments.verification.checks import (
    api_endpoint,
    availability,
    database,
    health,
    integrations,
    monitoring,
    performance,
    quality,
    rollback,
    security,
)

_BY_NAME: dict[str, ModuleType] = {
    module.NAME: module
    for module in (
        health, availability, api_endpoint, database, performance,
        security, integrations, monitoring, rollback, quality,
    )
}  # fmt: skip
# api_endpoint runs before monitoring, which looks for the series that request left.
CHECKS: list[ModuleType] = [_BY_NAME[name] for name in CheckName]
