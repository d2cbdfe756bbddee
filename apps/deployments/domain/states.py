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
    VERIFYING = "verifying"  # checks run against the new version before traffic moves
    ROLLING_OUT = "rolling_out"  # traffic moving to it, step by step
    PROMOTED = "promoted"  # it is the deployment's stable release now
    ROLLED_BACK = "rolled_back"  # traffic went back to the previous release
    FAILED = "failed"  # it could not be verified or rolled out
    CANCELLED = "cancelled"  # withdrawn before it started


R = ReleaseState
RELEASE = StateMachine(
    "release",
    ReleaseState,
    initial=R.PENDING,
    transitions={
        R.PENDING: {R.VERIFYING, R.CANCELLED},
        R.VERIFYING: {R.ROLLING_OUT, R.FAILED, R.ROLLED_BACK},
        R.ROLLING_OUT: {R.PROMOTED, R.ROLLED_BACK, R.FAILED},
    },
    tones={
        R.VERIFYING: "warn",
        R.ROLLING_OUT: "warn",
        R.PROMOTED: "ok",
        R.ROLLED_BACK: "bad",
        R.FAILED: "bad",
    },
)

# At most one release per deployment may be in one of these at a time.
RELEASE_OPEN = frozenset({R.PENDING.value, R.VERIFYING.value, R.ROLLING_OUT.value})


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
        V.QUEUED: {V.RUNNING},
        V.RUNNING: {V.PASSED, V.FAILED, V.ERRORED},
    },
    tones={V.RUNNING: "warn", V.PASSED: "ok", V.FAILED: "bad", V.ERRORED: "bad"},
)
