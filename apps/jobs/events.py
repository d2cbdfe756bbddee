"""Channel-layer groups of jobs.

Job changes are not published: the job page polls (htmx), and the Overview's activity feed
gets operators' actions on jobs from the audit log.
"""

from __future__ import annotations


def selftest_group(job_id: int, token: str) -> str:
    """A throwaway group a self-test sends itself a message through."""
    return f"selftest.{job_id}.{token}"
