"""An adapter's base as its version's parent: resolved from adapter_config.json by the one selector
that loading also uses, recorded by scans, shown by the API."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.core.domain.roles import Role
from apps.models import selectors, services
from apps.models.models import ModelVersion
from tests.models.factories import ModelVersionFactory
from tests.models.formats import corpus
from tests.models.scans import scan_now, version_at

pytestmark = pytest.mark.django_db


def _adapter_of(base: Path | str) -> dict[str, Any]:
    return {
        "peft_type": "LORA",
        "base_model_name_or_path": str(base),
        "r": 8,
        "lora_alpha": 16,
        "target_modules": ["q_proj"],
    }


def _adapter(at: str) -> ModelVersion:
    return ModelVersionFactory(kind="adapter", metadata={"adapter": {"base_model_name_or_path": at}})


def test_a_scan_records_the_base_an_adapter_names_by_path_as_its_parent(root: Path) -> None:
    corpus.write_hf_folder(root / "base")
    corpus.write_adapter_folder(root / "lora", _adapter_of((root / "base").resolve()))

    scan_now()

    lora, base = version_at(root / "lora"), version_at(root / "base")
    assert (lora.kind, lora.parent) == ("adapter", base)


def test_a_base_registered_after_its_adapter_is_found_by_a_later_scan(root: Path) -> None:
    corpus.write_adapter_folder(root / "lora", _adapter_of(f"{(root / 'base').resolve()}/"))
    scan_now()
    assert version_at(root / "lora").parent is None

    corpus.write_hf_folder(root / "base")
    scan_now()

    assert version_at(root / "lora").parent == version_at(root / "base")


def test_an_adapter_naming_a_hub_id_or_with_a_parent_already_keeps_what_it_has(root: Path) -> None:
    corpus.write_hf_folder(root / "base")
    corpus.write_adapter_folder(root / "hub-lora")  # names meta-llama/Llama-3.1-8B
    corpus.write_adapter_folder(root / "lora", _adapter_of((root / "base").resolve()))
    scan_now()
    chosen = ModelVersionFactory()
    ModelVersion.objects.filter(path=str(root / "lora")).update(parent=chosen)

    scan_now()

    assert version_at(root / "hub-lora").parent is None
    assert version_at(root / "lora").parent == chosen


def test_a_parent_an_operator_cleared_stays_cleared_through_later_scans(root: Path) -> None:
    corpus.write_hf_folder(root / "base")
    corpus.write_adapter_folder(root / "lora", _adapter_of((root / "base").resolve()))
    scan_now()
    services.version_set_parent(version=version_at(root / "lora"), parent=None)

    scan_now()
    scan_now()

    assert version_at(root / "lora").parent is None


def test_an_adapter_config_naming_another_base_links_the_adapter_to_it(root: Path) -> None:
    corpus.write_hf_folder(root / "base")
    corpus.write_hf_folder(root / "other-base")
    corpus.write_adapter_folder(root / "lora", _adapter_of((root / "base").resolve()))
    scan_now()
    services.version_set_parent(version=version_at(root / "lora"), parent=None)

    config = root / "lora" / "adapter_config.json"
    config.write_text(json.dumps(_adapter_of((root / "other-base").resolve())))
    os.utime(config, ns=(time.time_ns(), time.time_ns() + 10**9))  # seen as changed, however fast
    scan_now()

    assert version_at(root / "lora").parent == version_at(root / "other-base")


def test_the_api_shows_the_parent_and_names_it(
    root: Path, client_as: Callable[[Role | None], APIClient]
) -> None:
    corpus.write_hf_folder(root / "base")
    corpus.write_adapter_folder(root / "lora", _adapter_of((root / "base").resolve()))
    scan_now()
    lora, base = version_at(root / "lora"), version_at(root / "base")

    body = client_as(Role.VIEWER).get(f"/api/v1/model-versions/{lora.pk}/").json()

    assert body["parent"] == base.pk
    assert body["parent_version"] == {
        "id": base.pk,
        "model": {"id": base.model_id, "name": "base", "archived": False},
        "number": 1,
    }


def test_the_selector_takes_the_newest_unarchived_version_at_the_named_path() -> None:
    old = ModelVersionFactory(path="/srv/models/base", number=1)
    newest = ModelVersionFactory(path="/srv/models/base", number=2, model=old.model)
    ModelVersionFactory(path="/srv/models/base", number=3, model=old.model, archived=True)
    lora, hub, nothing = _adapter(at="/srv/models/base/"), _adapter(at="org/name"), _adapter(at="")

    assert selectors.adapter_bases([lora, hub, nothing]) == {lora.pk: newest}
    assert selectors.adapter_base(lora) == newest
    assert selectors.adapter_base(hub) is None


def test_an_adapter_is_never_its_own_base() -> None:
    lora = ModelVersionFactory(kind="adapter", path="/srv/models/lora")
    lora.metadata = {"adapter": {"base_model_name_or_path": "/srv/models/lora"}}

    assert selectors.adapter_base(lora) is None
