import pytest
from django.test import Client
from django.urls import reverse

from apps.models.models import ModelAlias, ModelFile, ModelVersion, RegisteredModel, ScanRun
from tests.models.factories import ModelAliasFactory, ModelFileFactory, RegisteredModelFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("model", [RegisteredModel, ModelVersion, ModelFile, ModelAlias])
def test_changelist_loads_for_an_admin_with_a_search(admin_client_: Client, model: type) -> None:
    ModelAliasFactory(version=ModelFileFactory(version__model__name="llama").version)
    url = reverse(f"admin:registry_{model._meta.model_name}_changelist")

    response = admin_client_.get(url, {"q": "llama"})

    assert response.status_code == 200


def test_scan_runs_are_listed_read_only_for_an_admin(admin_client_: Client) -> None:
    scan = ScanRun.objects.create(roots=["/srv/models"], new=3)

    listing = admin_client_.get(reverse("admin:registry_scanrun_changelist"))
    change = admin_client_.get(reverse("admin:registry_scanrun_change", args=[scan.pk]))

    assert listing.status_code == 200
    assert [s.pk for s in listing.context["cl"].result_list] == [scan.pk]
    assert change.status_code == 200
    assert change.context["has_change_permission"] is False


def test_registered_model_changelist_filters_archived(admin_client_: Client) -> None:
    RegisteredModelFactory(name="gone", archived=True)
    RegisteredModelFactory(name="here")

    response = admin_client_.get(
        reverse("admin:registry_registeredmodel_changelist"), {"archived__exact": "0"}
    )

    assert [m.name for m in response.context["cl"].result_list] == ["here"]


def test_admin_archive_action_archives_the_selected_models(admin_client_: Client) -> None:
    model = RegisteredModelFactory()

    admin_client_.post(
        reverse("admin:registry_registeredmodel_changelist"),
        {"action": "archive", "_selected_action": [model.pk]},
    )

    model.refresh_from_db()
    assert model.archived
