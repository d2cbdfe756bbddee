"""A job's page and the jobs list, live: what changed is announced on the job's channel-layer group
(`job.<id>`) and the list's (`jobs`). PLACEHOLDER: the live helper replaces this module."""

from __future__ import annotations


def job_changed(job_id: int) -> None:
    """The job's row, metric series or checkpoints changed."""


def job_logged(job_id: int) -> None:
    """A line was added to the job's log."""
