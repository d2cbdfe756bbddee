"""Upgrading a database made before serving became its own app: fleet at 0003_serving, deployments
at 0001_initial, serving not there yet. Its rows are written with the historical models of that old
head, as the old MOC wrote them; after migrating to today's head (and post_migrate, as `migrate`
sends it) they are read with today's models.

Every placement, serving profile and inference record keeps its id, its values and its links, and
what points at them from elsewhere follows: a release's placements, audit entries, role grants, and
the periodic task's row. Migrating back restores the fleet_* tables and content types.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.apps.registry import Apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.core.management.sql import emit_post_migrate_signal
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.recorder import MigrationRecorder
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask, PeriodicTasks

from apps.core.models import AuditEvent
from apps.deployments.models import Release
from apps.serving.domain.states import PlacementState
from apps.serving.models import InferenceRecord, Placement, ServingProfile

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

P = PlacementState
Node = tuple[str, str]
# The last migrations before the move, of the two apps the move added one to.
BEFORE_THE_MOVE = {"fleet": "0003_serving", "deployments": "0001_initial"}
MOVED = {"placement": Placement, "servingprofile": ServingProfile, "inferencerecord": InferenceRecord}


def old_head(executor: MigrationExecutor) -> list[Node]:
    return [
        (app, BEFORE_THE_MOVE.get(app, name))
        for app, name in executor.loader.graph.leaf_nodes()
        if app != "serving"
    ]


def migrate_to_old_head() -> Apps:
    """Unapply serving and what came with it; the models as they were there."""
    executor = MigrationExecutor(connection)
    targets = old_head(executor)
    executor.migrate([*targets, ("serving", None)])
    ContentType.objects.clear_cache()
    return executor.loader.project_state(targets).apps


def migrate_to_new_head() -> None:
    """What `manage.py migrate` does: every app to its leaf, then post_migrate (content types,
    permissions, and the role groups' grants through apps.core.roles.sync_roles)."""
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    emit_post_migrate_signal(verbosity=0, interactive=False, db=connection.alias)
    ContentType.objects.clear_cache()


def table_names() -> set[str]:
    with connection.cursor() as cursor:
        return set(connection.introspection.table_names(cursor))


def constraints_of(table: str) -> dict[str, dict[str, Any]]:
    with connection.cursor() as cursor:
        return connection.introspection.get_constraints(cursor, table)


def rows_of(model: Any) -> list[dict[str, Any]]:
    return list(model.objects.order_by("pk").values())


@dataclass
class Old:
    """What the old head held: rows as values, and the ids the checks look for."""

    rows: dict[str, list[dict[str, Any]]]
    release_placements: set[tuple[int, int]]
    base: int
    adapter: int
    victim: int
    release: int
    audit: int
    operator: int
    content_types: dict[str, int]
    placement_permissions: dict[str, int]
    periodic_task: int
    untouched_periodic_task: int


def write_old_rows(historical: Apps) -> Old:
    """A small fleet as an old MOC left it, written with the old head's historical models."""
    now = timezone.now()
    content_types = {
        model: historical.get_model("contenttypes", "ContentType").objects.get_or_create(
            app_label="fleet", model=model
        )[0]
        for model in MOVED
    }
    permissions = {
        verb: historical.get_model("auth", "Permission").objects.get_or_create(
            content_type=content_types["placement"],
            codename=f"{verb}_placement",
            defaults={"name": f"Can {verb} placement"},
        )[0]
        for verb in ("view", "add", "change", "delete")
    }
    operators = historical.get_model("auth", "Group").objects.get_or_create(name="operator")[0]
    operators.permissions.add(permissions["view"], permissions["add"], permissions["change"])
    operator = historical.get_model("auth", "User").objects.create(username="olga", password="!")
    operator.groups.add(operators)

    node = historical.get_model("fleet", "Node").objects.create(name="gpu-a", backend="sim")
    Device = historical.get_model("fleet", "Device")
    gpu0 = Device.objects.create(
        node=node, index=0, uuid="GPU-a0", name="sim", kind="gpu", capacity_bytes=24 << 30
    )
    gpu1 = Device.objects.create(
        node=node, index=1, uuid="GPU-a1", name="sim", kind="gpu", capacity_bytes=24 << 30
    )
    RegisteredModel = historical.get_model("registry", "RegisteredModel")
    ModelVersion = historical.get_model("registry", "ModelVersion")
    llama = RegisteredModel.objects.create(name="llama")
    lora = RegisteredModel.objects.create(name="llama-lora")
    v1 = ModelVersion.objects.create(model=llama, number=1, format="safetensors", path="/m/llama/1")
    v2 = ModelVersion.objects.create(model=llama, number=2, format="safetensors", path="/m/llama/2")
    adapter_version = ModelVersion.objects.create(
        model=lora, number=1, format="safetensors", path="/m/lora/1", kind="adapter", parent=v1
    )

    OldPlacement = historical.get_model("fleet", "Placement")
    base = OldPlacement.objects.create(
        version=v1,
        device=gpu0,
        state=P.LOADED,
        reserved_bytes=8 << 30,
        measured_bytes=7 << 30,
        pinned=True,
        keep_alive_s=900,
        last_used_at=now,
        use_count=12,
        loaded_at=now - timedelta(minutes=5),
        load_seconds=4.5,
        priority=2.25,
        requested_by=operator,
    )
    adapter = OldPlacement.objects.create(
        version=adapter_version, device=gpu0, state=P.LOADING, reserved_bytes=1 << 30, depends_on=base
    )
    victim = OldPlacement.objects.create(
        version=v2,
        device=gpu0,
        state=P.UNLOADING,
        reserved_bytes=8 << 30,
        displaced_by=adapter,
        end_reason="evicted for another",
    )
    OldPlacement.objects.create(
        version=v2,
        device=gpu1,
        state=P.FAILED,
        reserved_bytes=8 << 30,
        error="CUDA out of memory",
        error_class="oom",
        ended_at=now,
    )
    # Ended: a second row of v1 on gpu0 beside the active one, which the constraint allows.
    OldPlacement.objects.create(
        version=v1,
        device=gpu0,
        state=P.UNLOADED,
        reserved_bytes=8 << 30,
        ended_at=now,
        end_reason="keep-alive",
    )
    historical.get_model("fleet", "ServingProfile").objects.create(
        version=v1, max_concurrency=4, max_queue=16, keep_alive_s=900, preload=True, preload_node="gpu-a"
    )
    OldInferenceRecord = historical.get_model("fleet", "InferenceRecord")
    OldInferenceRecord.objects.create(
        at=now,
        version=v1,
        placement=base,
        task="generate",
        outcome="ok",
        compute_ms=12.5,
        tokens_in=3,
        tokens_out=8,
    )
    OldInferenceRecord.objects.create(
        at=now,
        version=adapter_version,
        placement=adapter,
        task="generate",
        outcome="timeout",
        error_class="timeout",
    )
    OldInferenceRecord.objects.create(at=now, version=v2, placement=None, task="embed", outcome="busy")

    deployment = historical.get_model("deployments", "Deployment").objects.create(
        name="chat", registered_model=llama
    )
    release = historical.get_model("deployments", "Release").objects.create(
        deployment=deployment, model_version=v1
    )
    release.placements.set([base, victim])

    audit = historical.get_model("core", "AuditEvent").objects.create(
        actor=operator,
        actor_label="olga",
        action="placement.create",
        source="api",
        content_type=content_types["placement"],
        object_id=str(base.pk),
        object_repr="llama v1 on gpu-a/0",
    )

    every_30s = historical.get_model("django_celery_beat", "IntervalSchedule").objects.create(
        every=30, period="seconds"
    )
    OldPeriodicTask = historical.get_model("django_celery_beat", "PeriodicTask")
    periodic_task = OldPeriodicTask.objects.create(
        name="fleet-placements-reconcile", task="apps.fleet.tasks.placements_reconcile", interval=every_30s
    )
    # Fleet's own task stayed in fleet: its row must not move.
    untouched = OldPeriodicTask.objects.create(
        name="fleet-nodes-sweep", task="apps.fleet.tasks.fleet_nodes_sweep", interval=every_30s
    )

    return Old(
        rows={name: rows_of(historical.get_model("fleet", name)) for name in MOVED},
        release_placements={(release.pk, p.pk) for p in release.placements.all()},
        base=base.pk,
        adapter=adapter.pk,
        victim=victim.pk,
        release=release.pk,
        audit=audit.pk,
        operator=operator.pk,
        content_types={model: ct.pk for model, ct in content_types.items()},
        placement_permissions={verb: perm.pk for verb, perm in permissions.items()},
        periodic_task=periodic_task.pk,
        untouched_periodic_task=untouched.pk,
    )


@pytest.fixture
def old(transactional_db: None) -> Iterator[Old]:
    """The old head with its rows; the database is back at the new head afterwards, whatever happened."""
    try:
        yield write_old_rows(migrate_to_old_head())
    finally:
        migrate_to_new_head()


@pytest.fixture
def upgraded(old: Old) -> Old:
    migrate_to_new_head()
    return old


def test_the_old_head_is_before_the_move(old: Old) -> None:
    # The footing of every other test here.
    applied = MigrationRecorder(connection).applied_migrations()

    assert not [key for key in applied if key[0] == "serving"]
    assert ("fleet", "0004_serving_moved_out") not in applied
    assert ("deployments", "0002_release_placements_in_serving") not in applied
    assert {"fleet_placement", "fleet_servingprofile", "fleet_inferencerecord"} <= table_names()


def test_upgrading_applies_every_migration_to_the_new_head(upgraded: Old) -> None:
    executor = MigrationExecutor(connection)

    assert executor.migration_plan(executor.loader.graph.leaf_nodes()) == []
    assert ("serving", "0002_serving_tables") in executor.loader.applied_migrations


def test_upgrading_keeps_every_placement_profile_and_record_with_its_id_and_values(upgraded: Old) -> None:
    # Columns added by later migrations (e.g. an inference record's token timings) read as empty;
    # every column the old head had keeps its value.
    for name, model in MOVED.items():
        now, then = rows_of(model), upgraded.rows[name]
        assert len(now) == len(then), name
        assert [{k: row[k] for k in old} for row, old in zip(now, then, strict=True)] == then, name
    assert {r["ttft_ms"] for r in rows_of(InferenceRecord)} == {None}


def test_upgrading_keeps_placements_links_to_devices_versions_and_each_other(upgraded: Old) -> None:
    base = Placement.objects.get(pk=upgraded.base)
    adapter = Placement.objects.get(pk=upgraded.adapter)
    victim = Placement.objects.get(pk=upgraded.victim)

    assert (base.device.node.name, base.device.index) == ("gpu-a", 0)
    assert (base.version.model.name, base.version.number) == ("llama", 1)
    assert base.requested_by.username == "olga"
    assert adapter.depends_on == base
    assert list(base.dependents.all()) == [adapter]
    assert victim.displaced_by == adapter
    assert list(adapter.displaced.all()) == [victim]
    assert base.version.serving.max_concurrency == 4


def test_upgrading_keeps_inference_records_on_their_placements(upgraded: Old) -> None:
    by_outcome = {r.outcome: r for r in InferenceRecord.objects.select_related("placement")}

    assert by_outcome["ok"].placement == Placement.objects.get(pk=upgraded.base)
    assert by_outcome["timeout"].placement == Placement.objects.get(pk=upgraded.adapter)
    assert by_outcome["busy"].placement is None
    assert set(Placement.objects.get(pk=upgraded.base).inferences.values_list("outcome", flat=True)) == {"ok"}


def test_upgrading_keeps_a_releases_placements(upgraded: Old) -> None:
    release = Release.objects.get(pk=upgraded.release)

    assert {(release.pk, p.pk) for p in release.placements.all()} == upgraded.release_placements
    assert list(Placement.objects.get(pk=upgraded.victim).releases.all()) == [release]


def test_upgrading_gives_the_moved_tables_serving_names(upgraded: Old) -> None:
    tables = table_names()

    assert {"serving_placement", "serving_servingprofile", "serving_inferencerecord"} <= tables
    assert not {"fleet_placement", "fleet_servingprofile", "fleet_inferencerecord"} & tables
    assert {m._meta.db_table for m in MOVED.values()} <= tables


def test_upgrading_renames_the_one_active_constraint_and_the_inference_index(upgraded: Old) -> None:
    placement = constraints_of("serving_placement")
    inference = constraints_of("serving_inferencerecord")

    assert placement["serving_placement_one_active"]["unique"]
    assert placement["serving_placement_one_active"]["columns"] == ["version_id", "device_id"]
    assert "fleet_placement_one_active" not in placement
    assert inference["serving_inference_version_at"]["index"]
    assert inference["serving_inference_version_at"]["columns"] == ["version_id", "at"]
    assert "fleet_inference_version_at" not in inference


def test_upgrading_points_the_foreign_keys_into_and_out_of_the_moved_tables_at_the_right_tables(
    upgraded: Old,
) -> None:
    foreign_keys = {
        (table, tuple(info["columns"])): info["foreign_key"][0]
        for table in table_names()
        for info in constraints_of(table).values()
        if info["foreign_key"]
    }

    assert not {"fleet_placement", "fleet_servingprofile", "fleet_inferencerecord"} & set(
        foreign_keys.values()
    )
    assert {key for key, target in foreign_keys.items() if target == "serving_placement"} == {
        ("deployments_release_placements", ("placement_id",)),
        ("serving_inferencerecord", ("placement_id",)),
        ("serving_placement", ("depends_on_id",)),
        ("serving_placement", ("displaced_by_id",)),
    }
    assert foreign_keys[("serving_placement", ("device_id",))] == "fleet_device"
    assert foreign_keys[("serving_placement", ("version_id",))] == "registry_modelversion"
    assert foreign_keys[("serving_servingprofile", ("version_id",))] == "registry_modelversion"


def test_upgrading_lets_new_placements_take_fresh_ids(upgraded: Old) -> None:
    base = Placement.objects.get(pk=upgraded.base)

    placement = Placement.objects.create(
        version_id=base.version_id, device_id=base.device.node.devices.get(index=1).pk, reserved_bytes=1
    )

    assert placement.pk > max(row["id"] for row in upgraded.rows["placement"])


def test_upgrading_still_refuses_a_second_active_placement_of_a_version_on_a_device(upgraded: Old) -> None:
    base = Placement.objects.get(pk=upgraded.base)

    with pytest.raises(IntegrityError, match="serving_placement_one_active|UNIQUE"), transaction.atomic():
        Placement.objects.create(
            version_id=base.version_id, device_id=base.device_id, state=P.REQUESTED, reserved_bytes=1
        )


def test_upgrading_moves_the_content_types_in_place_keeping_their_ids(upgraded: Old) -> None:
    for name, model in MOVED.items():
        assert ContentType.objects.get_for_model(model).pk == upgraded.content_types[name], name
    assert not ContentType.objects.filter(app_label="fleet", model__in=MOVED).exists()


def test_upgrading_keeps_audit_entries_pointing_at_their_placement(upgraded: Old) -> None:
    event = AuditEvent.objects.get(pk=upgraded.audit)

    assert (event.content_type.app_label, event.content_type.model) == ("serving", "placement")
    assert event.content_type.get_object_for_this_type(pk=event.object_id) == Placement.objects.get(
        pk=upgraded.base
    )
    assert (
        AuditEvent.objects.filter(
            content_type=ContentType.objects.get_for_model(Placement), object_id=str(upgraded.base)
        ).get()
        == event
    )


def test_upgrading_keeps_the_placement_permissions_rows_under_serving(upgraded: Old) -> None:
    placement_type = ContentType.objects.get_for_model(Placement)

    for verb, pk in upgraded.placement_permissions.items():
        permission = Permission.objects.get(pk=pk)
        assert (permission.content_type_id, permission.codename) == (placement_type.pk, f"{verb}_placement")
    assert Permission.objects.filter(content_type=placement_type).count() == 4


def test_upgrading_keeps_an_operator_allowed_to_change_placements(upgraded: Old) -> None:
    # A fresh object: a user's permissions are cached on it once asked.
    operator = get_user_model().objects.get(pk=upgraded.operator)

    assert operator.has_perm("serving.change_placement")
    assert operator.has_perm("serving.add_placement")
    assert operator.has_perm("serving.change_servingprofile")
    assert not operator.has_perm("serving.change_inferencerecord")
    assert not operator.has_perm("fleet.change_placement")


def test_upgrading_points_the_periodic_tasks_row_at_the_serving_task(upgraded: Old) -> None:
    row = PeriodicTask.objects.get(pk=upgraded.periodic_task)

    assert (row.name, row.task) == ("serving-placements-reconcile", "apps.serving.tasks.placements_reconcile")
    assert row.interval.every == 30


def test_upgrading_tells_a_running_beat_to_reread_its_schedule(old: Old) -> None:
    before = timezone.now()

    migrate_to_new_head()

    assert PeriodicTasks.objects.get(ident=1).last_update >= before


def test_upgrading_drops_the_old_row_where_a_new_beat_already_made_the_serving_one(old: Old) -> None:
    # given: the new beat started before migrate and wrote its own entry beside the old one
    # (django-celery-beat's tables are the same at both heads, so today's model writes it)
    made_by_new_beat = PeriodicTask.objects.create(
        name="serving-placements-reconcile",
        task="apps.serving.tasks.placements_reconcile",
        interval=IntervalSchedule.objects.get(every=30, period="seconds"),
    )

    migrate_to_new_head()

    reconcilers = PeriodicTask.objects.filter(task__endswith=".placements_reconcile")
    assert list(reconcilers.values_list("pk", "name")) == [
        (made_by_new_beat.pk, "serving-placements-reconcile")
    ]
    assert not PeriodicTask.objects.filter(pk=old.periodic_task).exists()


def test_upgrading_leaves_fleets_own_periodic_tasks_row_alone(upgraded: Old) -> None:
    row = PeriodicTask.objects.get(pk=upgraded.untouched_periodic_task)

    assert (row.name, row.task) == ("fleet-nodes-sweep", "apps.fleet.tasks.fleet_nodes_sweep")


def test_a_serving_content_type_left_by_an_interrupted_upgrade_gives_way_to_the_moved_one(old: Old) -> None:
    # given: `migrate serving 0001` ran on its own, and its post_migrate made serving's content
    # types (new ids, new permissions) beside fleet's
    MigrationExecutor(connection).migrate([("serving", "0001_initial")])
    emit_post_migrate_signal(verbosity=0, interactive=False, db=connection.alias)
    made_early = ContentType.objects.get(app_label="serving", model="placement").pk
    assert made_early != old.content_types["placement"]

    # when
    migrate_to_new_head()

    # then
    assert ContentType.objects.get_for_model(Placement).pk == old.content_types["placement"]
    assert not ContentType.objects.filter(pk=made_early).exists()
    assert AuditEvent.objects.get(pk=old.audit).content_type_id == old.content_types["placement"]
    assert get_user_model().objects.get(pk=old.operator).has_perm("serving.change_placement")


def test_migrating_back_restores_the_fleet_tables_content_types_and_periodic_task(upgraded: Old) -> None:
    historical = migrate_to_old_head()

    tables = table_names()
    assert {"fleet_placement", "fleet_servingprofile", "fleet_inferencerecord"} <= tables
    assert not {"serving_placement", "serving_servingprofile", "serving_inferencerecord"} & tables
    assert "fleet_placement_one_active" in constraints_of("fleet_placement")
    assert "fleet_inference_version_at" in constraints_of("fleet_inferencerecord")
    for name in MOVED:
        assert rows_of(historical.get_model("fleet", name)) == upgraded.rows[name], name
    OldContentType = historical.get_model("contenttypes", "ContentType")
    for name, pk in upgraded.content_types.items():
        assert OldContentType.objects.get(app_label="fleet", model=name).pk == pk
    assert not OldContentType.objects.filter(app_label="serving").exists()
    task = historical.get_model("django_celery_beat", "PeriodicTask").objects.get(pk=upgraded.periodic_task)
    assert (task.name, task.task) == ("fleet-placements-reconcile", "apps.fleet.tasks.placements_reconcile")
