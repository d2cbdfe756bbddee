"""Deployments' tasks, by name, for the modules that send them (see apps.core.dispatch): the
rollout engine, verification and services send them by name, since apps.deployments.tasks
imports the very modules that send them."""

RELEASE_TICK = "apps.deployments.tasks.release_tick"
VERIFICATION_RUN = "apps.deployments.tasks.verification_run"
