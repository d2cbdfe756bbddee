"""database: MOC's database answers, and every migration is applied."""

from __future__ import annotations

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor

from apps.core import selectors
from apps.deployments.domain.checks import CheckName, CheckStatus
from apps.deployments.verification.base import Context, Outcome, one_line

NAME = CheckName.DATABASE
DESCRIPTION = "The database answers and every migration is applied"
TIMEOUT_S = 10.0


def run(ctx: Context) -> Outcome:
    connection = connections[DEFAULT_DB_ALIAS]
    try:
        selectors.database_ok()
    except Exception as exc:
        why = f"{type(exc).__name__}: {exc}"
        return Outcome(CheckStatus.FAIL, one_line(f"the database does not answer: {why}"))
    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    evidence = {"vendor": connection.vendor, "unapplied": [f"{m.app_label}.{m.name}" for m, _ in plan]}
    if plan:
        shown = ", ".join(evidence["unapplied"][:5])
        more = f" and {len(plan) - 5} more" if len(plan) > 5 else ""
        return Outcome(CheckStatus.FAIL, f"{len(plan)} migration(s) not applied: {shown}{more}", evidence)
    return Outcome(CheckStatus.PASS, f"{connection.vendor} answers; every migration is applied", evidence)
