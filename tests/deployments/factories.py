"""factory_boy factories for the deployments tables."""

from __future__ import annotations

import factory

from apps.deployments.domain.checks import CheckName, CheckStatus
from apps.deployments.models import CheckResult, Deployment, Release, ReleaseEvent, VerificationRun
from apps.models.domain.formats import ModelFormat
from apps.models.domain.states import ValidationState
from tests.fleet.factories import GIB
from tests.models.factories import ModelVersionFactory


class DeploymentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Deployment

    name = factory.Sequence(lambda n: f"endpoint-{n}")


class ValidVersionFactory(ModelVersionFactory):
    validation_state = ValidationState.VALID


class ServableVersionFactory(ValidVersionFactory):
    """A valid version the scheduler can place (a Hugging Face causal LM of 1 GiB)."""

    format = ModelFormat.HF
    kind = "causal-lm"
    estimated_vram_bytes = GIB


class ReleaseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Release

    deployment = factory.SubFactory(DeploymentFactory)
    model_version = factory.SubFactory(ValidVersionFactory)


class VerificationRunFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = VerificationRun

    release = factory.SubFactory(ReleaseFactory)


class CheckResultFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CheckResult

    run = factory.SubFactory(VerificationRunFactory)
    name = CheckName.HEALTH
    status = CheckStatus.PASS
    reason = "the probe answered"


class ReleaseEventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ReleaseEvent

    release = factory.SubFactory(ReleaseFactory)
    kind = "note"
