from __future__ import annotations

from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

from apps.jobs.domain.states import DatasetState
from tests.jobs.factories import DatasetFactory, JobFactory

pytestmark = pytest.mark.django_db


def test_dataset_changelist_searches_by_name(admin_client_: Client) -> None:
    DatasetFactory(name="support-chat")
    DatasetFactory(name="corpus")

    response = admin_client_.get(reverse("admin:jobs_dataset_changelist"), {"q": "support"})

    assert [d.name for d in response.context["cl"].result_list] == ["support-chat"]


def test_dataset_change_page_loads(admin_client_: Client) -> None:
    dataset = DatasetFactory()

    assert admin_client_.get(reverse("admin:jobs_dataset_change", args=[dataset.pk])).status_code == 200


def test_the_validate_action_validates_the_chosen_datasets(admin_client_: Client, dataset_root: Path) -> None:
    (dataset_root / "a.txt").write_text("one\n")
    dataset = DatasetFactory(root=str(dataset_root), path="a.txt", format="text")

    response = admin_client_.post(
        reverse("admin:jobs_dataset_changelist"), {"action": "validate", "_selected_action": [dataset.pk]}
    )

    dataset.refresh_from_db()
    assert response.status_code == 302
    assert (dataset.state, dataset.rows) == (DatasetState.VALID, 1)


def test_the_admin_keeps_the_name_and_a_used_datasets_split_read_only(admin_client_: Client) -> None:
    fresh = DatasetFactory()
    used = DatasetFactory()
    JobFactory(dataset=used)

    def editable(dataset: object) -> set[str]:
        response = admin_client_.get(reverse("admin:jobs_dataset_change", args=[dataset.pk]))  # type: ignore[attr-defined]
        return set(response.context["adminform"].form.fields)

    assert {"eval_share", "split_seed"} <= editable(fresh)
    assert "name" not in editable(fresh)
    assert not {"eval_share", "split_seed", "name"} & editable(used)
