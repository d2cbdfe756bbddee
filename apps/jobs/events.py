"""Channel-layer groups of jobs.

A job's own changes go out through apps.jobs.live (groups `job.<id>` and `jobs`); the Overview's
activity feed gets operators' actions on jobs from the audit log.
"""

from __future__ import annotations


def selftest_group(job_id: int, token: str) -> str:
    """A throwaway group a self-test sends itself a message through."""
    return f"selftest.{job_id}.{token}"
