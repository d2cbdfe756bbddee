from collections.abc import Callable

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from apps.core.domain.roles import Role
from apps.models.domain.states import ValidationState
from tests.models.factories import (
    ModelAliasFactory,
    ModelFileFactory,
    ModelVersionFactory,
    RegisteredModelFactory,
)

pytestmark = pytest.mark.django_db

Client = Callable[[Role | None], APIClient]


def test_models_list_loads_for_a_viewer(client_as: Client) -> None:
    RegisteredModelFactory(name="llama", tags=["llm"])

    response = client_as(Role.VIEWER).get(reverse("models:list"))

    assert response.status_code == 200
    assert "llama" in response.content.decode()


def test_models_list_sends_anonymous_visitors_to_log_in(client_as: Client) -> None:
    response = client_as(None).get(reverse("models:list"))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_models_list_when_empty_says_how_to_register_a_model(client_as: Client) -> None:
    page = client_as(Role.VIEWER).get(reverse("models:list")).content.decode()

    assert "POST /api/v1/registered-models/" in page
    assert "Discovery" in page


def test_models_list_searches_by_tag(client_as: Client) -> None:
    RegisteredModelFactory(name="chatty", tags=["chat"])
    RegisteredModelFactory(name="encoder", tags=["embedding"])

    page = client_as(Role.VIEWER).get(reverse("models:list"), {"q": "chat"}).content.decode()

    assert "chatty" in page
    assert "encoder" not in page


def test_models_list_when_nothing_matches_offers_to_clear_the_filters(client_as: Client) -> None:
    RegisteredModelFactory(name="llama")

    page = client_as(Role.VIEWER).get(reverse("models:list"), {"q": "nothing-like-it"}).content.decode()

    assert "Nothing matches these filters" in page


def test_model_detail_shows_versions_and_aliases(client_as: Client) -> None:
    version = ModelVersionFactory(model=RegisteredModelFactory(name="llama"), number=7)
    ModelAliasFactory(version=version, name="staging")

    response = client_as(Role.VIEWER).get(reverse("models:detail", args=[version.model_id]))

    page = response.content.decode()
    assert response.status_code == 200
    assert "v7" in page
    assert "staging" in page


def test_model_detail_of_an_unknown_model_is_404(client_as: Client) -> None:
    assert client_as(Role.VIEWER).get(reverse("models:detail", args=[999_999])).status_code == 404


def test_version_detail_shows_files_metadata_and_why_it_is_invalid(client_as: Client) -> None:
    version = ModelVersionFactory(
        validation_state=ValidationState.INVALID,
        validation_error="tensor offsets overlap",
        metadata={"architecture": "LlamaForCausalLM", "dtypes": ["bf16"]},
    )
    ModelFileFactory(version=version, path="model-00001-of-00002.safetensors")

    page = client_as(Role.VIEWER).get(reverse("models:version", args=[version.pk])).content.decode()

    assert "model-00001-of-00002.safetensors" in page
    assert "LlamaForCausalLM" in page
    assert "tensor offsets overlap" in page
    assert "Invalid" in page
