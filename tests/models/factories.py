"""factory_boy factories for the registry's tables."""

from __future__ import annotations

import factory

from apps.models.domain.formats import FileFormat, ModelFormat
from apps.models.models import ModelAlias, ModelFile, ModelVersion, RegisteredModel


class RegisteredModelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = RegisteredModel

    name = factory.Sequence(lambda n: f"model-{n}")
    description = ""
    tags = factory.LazyFunction(list)


class ModelVersionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ModelVersion

    model = factory.SubFactory(RegisteredModelFactory)
    number = factory.Sequence(lambda n: n + 1)
    format = ModelFormat.SAFETENSORS
    path = factory.LazyAttribute(lambda o: f"/srv/models/{o.model.name}/v{o.number}")
    size_bytes = 16_000_000_000


class ModelFileFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ModelFile

    version = factory.SubFactory(ModelVersionFactory)
    path = factory.Sequence(lambda n: f"model-{n:05d}.safetensors")
    size_bytes = 4_000_000_000
    format = FileFormat.SAFETENSORS


class ModelAliasFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ModelAlias

    version = factory.SubFactory(ModelVersionFactory)
    model = factory.LazyAttribute(lambda o: o.version.model)
    name = "production"
