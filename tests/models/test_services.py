import pytest
from django.core.exceptions import ValidationError

from apps.core.domain.statemachine import InvalidTransition
from apps.models import services
from apps.models.domain.states import ValidationState
from apps.models.models import RegisteredModel
from tests.models.factories import ModelVersionFactory, RegisteredModelFactory

pytestmark = pytest.mark.django_db


def test_register_stores_the_model_with_clean_tags(operator: object) -> None:
    model = services.model_register(
        name="llama-3.1-8b", description=" chat ", tags=["LLM", "llm"], owner=operator
    )

    stored = RegisteredModel.objects.get(pk=model.pk)
    assert (stored.name, stored.description, stored.tags, stored.owner) == (
        "llama-3.1-8b",
        "chat",
        ["llm"],
        operator,
    )


def test_register_refuses_a_name_that_differs_only_in_case() -> None:
    RegisteredModelFactory(name="llama")

    with pytest.raises(ValidationError) as err:
        services.model_register(name="LLaMA")
    assert "name" in err.value.message_dict


def test_register_refuses_a_bad_tag_under_tags() -> None:
    with pytest.raises(ValidationError) as err:
        services.model_register(name="ok", tags=["not ok"])
    assert "tags" in err.value.message_dict


def test_update_may_keep_the_models_own_name() -> None:
    model = RegisteredModelFactory(name="llama")

    services.model_update(model=model, name="llama", description="new")

    model.refresh_from_db()
    assert model.description == "new"


def test_update_leaves_fields_that_were_not_given() -> None:
    model = RegisteredModelFactory(name="llama", description="kept", tags=["llm"])

    services.model_update(model=model, tags=["chat"])

    model.refresh_from_db()
    assert (model.description, model.tags) == ("kept", ["chat"])


def test_archive_marks_the_model_archived_with_a_time() -> None:
    model = RegisteredModelFactory()

    services.model_archive(model=model)

    model.refresh_from_db()
    assert model.archived
    assert model.archived_at is not None


def test_archive_twice_keeps_the_first_archive_time() -> None:
    model = services.model_archive(model=RegisteredModelFactory())
    first = model.archived_at

    again = services.model_archive(model=model)

    assert again.archived_at == first


def test_restore_brings_an_archived_model_back() -> None:
    model = services.model_archive(model=RegisteredModelFactory())

    services.model_restore(model=model)

    model.refresh_from_db()
    assert (model.archived, model.archived_at) == (False, None)


def test_validation_start_moves_a_pending_version_to_validating() -> None:
    version = ModelVersionFactory()

    assert services.version_validation_start(version=version)
    version.refresh_from_db()
    assert version.validation_state == ValidationState.VALIDATING


def test_validation_finish_without_problems_makes_the_version_valid() -> None:
    version = ModelVersionFactory(validation_state=ValidationState.VALIDATING)

    services.version_validation_finish(version=version, problems=[])

    version.refresh_from_db()
    assert version.validation_state == ValidationState.VALID
    assert version.validated_at is not None


def test_validation_finish_with_problems_makes_the_version_invalid_and_says_why() -> None:
    version = ModelVersionFactory(validation_state=ValidationState.VALIDATING)

    services.version_validation_finish(version=version, problems=["header too long", "bad dtype"])

    version.refresh_from_db()
    assert version.validation_state == ValidationState.INVALID
    assert version.validation_error == "header too long\nbad dtype"


def test_validation_finish_refuses_a_version_that_was_never_checked() -> None:
    version = ModelVersionFactory()

    with pytest.raises(InvalidTransition):
        services.version_validation_finish(version=version, problems=[])


def test_validation_start_returns_false_when_another_checker_started_first() -> None:
    version = ModelVersionFactory()
    stale = type(version).objects.get(pk=version.pk)
    services.version_validation_start(version=version)

    assert services.version_validation_start(version=stale) is False


def test_validation_restart_clears_the_old_reason() -> None:
    version = ModelVersionFactory(validation_state=ValidationState.INVALID, validation_error="bad dtype")

    services.version_validation_start(version=version)

    version.refresh_from_db()
    assert version.validation_error == ""
