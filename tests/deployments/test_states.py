import pytest

from apps.core.domain.statemachine import InvalidTransition, StateMachine
from apps.deployments.domain.states import (
    DEPLOYMENT,
    RELEASE,
    RELEASE_OPEN,
    VERIFICATION,
    DeploymentState,
    ReleaseState,
    VerificationState,
)

D, R, V = DeploymentState, ReleaseState, VerificationState


@pytest.mark.parametrize(
    ("machine", "src", "dst"),
    [
        (DEPLOYMENT, D.DRAFT, D.ACTIVE),
        (DEPLOYMENT, D.ACTIVE, D.PAUSED),
        (DEPLOYMENT, D.PAUSED, D.ACTIVE),
        (DEPLOYMENT, D.ACTIVE, D.RETIRED),
        (DEPLOYMENT, D.PAUSED, D.RETIRED),
        (DEPLOYMENT, D.DRAFT, D.RETIRED),
        (RELEASE, R.PENDING, R.LOADING),
        (RELEASE, R.PENDING, R.CANCELLED),
        (RELEASE, R.LOADING, R.VERIFYING),
        (RELEASE, R.LOADING, R.FAILED),
        (RELEASE, R.VERIFYING, R.PROGRESSING),
        (RELEASE, R.VERIFYING, R.FAILED),
        (RELEASE, R.VERIFYING, R.ROLLED_BACK),
        (RELEASE, R.PROGRESSING, R.PROMOTED),
        (RELEASE, R.PROGRESSING, R.PAUSED),
        (RELEASE, R.PROGRESSING, R.ABORTED),
        (RELEASE, R.PROGRESSING, R.ROLLED_BACK),
        (RELEASE, R.PAUSED, R.PROGRESSING),
        (RELEASE, R.PAUSED, R.PROMOTED),
        (RELEASE, R.PROMOTED, R.ROLLED_BACK),
        (VERIFICATION, V.QUEUED, V.RUNNING),
        (VERIFICATION, V.RUNNING, V.PASSED),
        (VERIFICATION, V.RUNNING, V.FAILED),
        (VERIFICATION, V.RUNNING, V.ERRORED),
    ],
)
def test_machines_allow_the_documented_moves(machine: StateMachine, src: str, dst: str) -> None:
    assert machine.can(src, dst)


@pytest.mark.parametrize(
    ("machine", "src", "dst"),
    [
        (DEPLOYMENT, D.DRAFT, D.PAUSED),
        (DEPLOYMENT, D.RETIRED, D.ACTIVE),
        (RELEASE, R.PENDING, R.PROMOTED),
        (RELEASE, R.PENDING, R.PROGRESSING),
        (RELEASE, R.PENDING, R.ABORTED),
        (RELEASE, R.VERIFYING, R.CANCELLED),
        (RELEASE, R.PROGRESSING, R.CANCELLED),
        (RELEASE, R.PROMOTED, R.ABORTED),
        (RELEASE, R.ABORTED, R.PROGRESSING),
        (VERIFICATION, V.QUEUED, V.PASSED),
        (VERIFICATION, V.PASSED, V.RUNNING),
    ],
)
def test_machines_refuse_other_moves(machine: StateMachine, src: str, dst: str) -> None:
    with pytest.raises(InvalidTransition):
        machine.check(src, dst)


@pytest.mark.parametrize(
    ("machine", "initial", "terminal"),
    [
        (DEPLOYMENT, D.DRAFT, {D.RETIRED}),
        (RELEASE, R.PENDING, {R.ABORTED, R.ROLLED_BACK, R.FAILED, R.CANCELLED}),
        (VERIFICATION, V.QUEUED, {V.PASSED, V.FAILED, V.ERRORED}),
    ],
)
def test_machines_start_and_end_where_documented(
    machine: StateMachine, initial: str, terminal: set[str]
) -> None:
    assert machine.initial == initial
    assert machine.terminal == terminal


def test_open_releases_are_the_unfinished_ones_short_of_promotion() -> None:
    assert frozenset(s.value for s in ReleaseState) - RELEASE.terminal - {R.PROMOTED} == RELEASE_OPEN
