import pytest

from apps.core.domain.statemachine import InvalidTransition
from apps.jobs.domain.states import JOB, JobState

J = JobState


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        (J.QUEUED, J.RUNNING),
        (J.QUEUED, J.CANCELLED),
        (J.RUNNING, J.SUCCEEDED),
        (J.RUNNING, J.FAILED),
        (J.RUNNING, J.CANCELLED),
        (J.RUNNING, J.QUEUED),
        (J.RUNNING, J.CANCELLING),
        (J.CANCELLING, J.CANCELLED),
        (J.CANCELLING, J.SUCCEEDED),
        (J.CANCELLING, J.FAILED),
    ],
)
def test_job_machine_allows_the_documented_moves(src: JobState, dst: JobState) -> None:
    assert JOB.can(src, dst)


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        (J.QUEUED, J.SUCCEEDED),
        (J.QUEUED, J.FAILED),
        (J.QUEUED, J.CANCELLING),
        (J.CANCELLING, J.RUNNING),
        (J.CANCELLING, J.QUEUED),
        (J.SUCCEEDED, J.QUEUED),
        (J.FAILED, J.RUNNING),
        (J.CANCELLED, J.QUEUED),
    ],
)
def test_job_machine_refuses_other_moves(src: JobState, dst: JobState) -> None:
    with pytest.raises(InvalidTransition):
        JOB.check(src, dst)


def test_finished_jobs_are_terminal() -> None:
    assert JOB.terminal == {J.SUCCEEDED, J.FAILED, J.CANCELLED}


def test_a_new_job_starts_queued() -> None:
    assert JOB.initial == J.QUEUED


def test_only_a_queued_job_can_be_started() -> None:
    assert JOB.sources(J.RUNNING) == {J.QUEUED}
