"""State machines of deployments, releases and verification runs (pure Python, no Django)."""

from enum import StrEnum

from apps.core.domain.statemachine import StateMachine


class DeploymentState(StrEnum):
    DRAFT = "draft"  # defined, not serving yet
    ACTIVE = "active"  # serving its current release
    PAUSED = "paused"  # kept, not serving; comes back as it was
    RETIRED = "retired"  # gone for good; deployments are retired, never deleted


D = DeploymentState
# A draft made by mistake can be retired without ever serving.
DEPLOYMENT = StateMachine(
    "deployment",
    DeploymentState,
    initial=D.DRAFT,
    transitions={
        D.DRAFT: {D.ACTIVE, D.RETIRED},
        D.ACTIVE: {D.PAUSED, D.RETIRED},
        D.PAUSED: {D.ACTIVE, D.RETIRED},
    },
    tones={D.ACTIVE: "ok", D.PAUSED: "warn"},
)


class ReleaseState(StrEnum):
    PENDING = "pending"  # asked for, not started
    LOADING = "loading"  # its replicas are being placed and loaded
    VERIFYING = "verifying"  # the verification suite runs against it before traffic moves
    PROGRESSING = "progressing"  # traffic moving to it (canary steps, a blue-green switch)
    PAUSED = "paused"  # held by a person, or by an inconclusive analysis, until resumed
    PROMOTED = "promoted"  # it is the deployment's stable release (until another is promoted)
    ABORTED = "aborted"  # stopped by a person or a failed analysis; traffic went back to stable
    ROLLED_BACK = "rolled_back"  # traffic returned to the previous release after verification failed,
    # or after it had been promoted
    FAILED = "failed"  # it could not be placed, loaded or verified, and there was nothing to go back to
    CANCELLED = "cancelled"  # withdrawn before it started


R = ReleaseState
RELEASE = StateMachine(
    "release",
    ReleaseState,
    initial=R.PENDING,
    transitions={
        R.PENDING: {R.LOADING, R.CANCELLED, R.FAILED},
        R.LOADING: {R.VERIFYING, R.PAUSED, R.ABORTED, R.ROLLED_BACK, R.FAILED},
        R.VERIFYING: {R.PROGRESSING, R.PAUSED, R.ABORTED, R.ROLLED_BACK, R.FAILED},
        R.PROGRESSING: {R.PAUSED, R.PROMOTED, R.ABORTED, R.ROLLED_BACK, R.FAILED},
        R.PAUSED: {R.LOADING, R.VERIFYING, R.PROGRESSING, R.PROMOTED, R.ABORTED, R.ROLLED_BACK, R.FAILED},
        # A promoted release can still be rolled back: traffic returns to the release before it.
        R.PROMOTED: {R.ROLLED_BACK},
    },
    tones={
        R.LOADING: "warn",
        R.VERIFYING: "warn",
        R.PROGRESSING: "warn",
        R.PAUSED: "warn",
        R.PROMOTED: "ok",
        R.ABORTED: "bad",
        R.ROLLED_BACK: "bad",
        R.FAILED: "bad",
    },
)

# At most one release per deployment may be in one of these at a time.
RELEASE_OPEN = frozenset(
    {R.PENDING.value, R.LOADING.value, R.VERIFYING.value, R.PROGRESSING.value, R.PAUSED.value}
)
# Open releases the rollout engine moves on by itself (a paused one waits for a person).
RELEASE_MOVING = frozenset({R.PENDING.value, R.LOADING.value, R.VERIFYING.value, R.PROGRESSING.value})


class VerificationState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    PASSED = "passed"  # every required check passed (warnings allowed)
    FAILED = "failed"  # a required check failed
    ERRORED = "errored"  # the run itself broke before it could judge


V = VerificationState
VERIFICATION = StateMachine(
    "verification run",
    VerificationState,
    initial=V.QUEUED,
    transitions={
        V.QUEUED: {V.RUNNING, V.ERRORED},
        V.RUNNING: {V.PASSED, V.FAILED, V.ERRORED},
    },
    tones={V.RUNNING: "warn", V.PASSED: "ok", V.FAILED: "bad", V.ERRORED: "bad"},
)


class Environment(StrEnum):
    STAGING = "staging"
    PRODUCTION = "production"


ENVIRONMENT_CHOICES = [(Environment.STAGING.value, "Staging"), (Environment.PRODUCTION.value, "Production")]


class OnInconclusive(StrEnum):
    """What an inconclusive analysis does to a release: hold it for a person, or roll it back."""

    PAUSE = "pause"
    ROLLBACK = "rollback"


ON_INCONCLUSIVE_CHOICES = [
    (OnInconclusive.PAUSE.value, "Pause for a person"),
    (OnInconclusive.ROLLBACK.value, "Roll back"),
]
