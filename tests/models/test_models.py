import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError

from tests.models.factories import (
    ModelAliasFactory,
    ModelFileFactory,
    ModelVersionFactory,
    RegisteredModelFactory,
)

pytestmark = pytest.mark.django_db


def test_a_version_number_is_unique_within_its_model() -> None:
    version = ModelVersionFactory(number=1)

    with pytest.raises(IntegrityError):
        ModelVersionFactory(model=version.model, number=1)


def test_two_models_may_each_have_a_version_one() -> None:
    ModelVersionFactory(number=1)

    assert ModelVersionFactory(number=1).number == 1


def test_a_version_number_starts_at_one() -> None:
    with pytest.raises(IntegrityError):
        ModelVersionFactory(number=0)


def test_model_names_are_unique_ignoring_case() -> None:
    RegisteredModelFactory(name="llama")

    with pytest.raises(IntegrityError):
        RegisteredModelFactory(name="LLAMA")


def test_a_file_path_is_unique_within_its_version() -> None:
    file = ModelFileFactory(path="model.safetensors")

    with pytest.raises(IntegrityError):
        ModelFileFactory(version=file.version, path="model.safetensors")


def test_an_alias_name_is_unique_within_its_model() -> None:
    alias = ModelAliasFactory(name="production")

    with pytest.raises(IntegrityError):
        ModelAliasFactory(version=ModelVersionFactory(model=alias.model), name="production")


def test_an_alias_must_point_at_a_version_of_its_own_model() -> None:
    alias = ModelAliasFactory.build(model=RegisteredModelFactory(), version=ModelVersionFactory())

    with pytest.raises(ValidationError) as err:
        alias.full_clean()
    assert "version" in err.value.message_dict
