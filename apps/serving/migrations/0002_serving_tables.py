# The moved tables take serving's names (fleet_placement -> serving_placement, and so on), with
# their constraint and index; the models' content types move from fleet to serving in place, so
# every permission, role grant and audit entry that points at them still does; and the periodic
# tasks' rows in django-celery-beat follow the tasks to apps.serving.tasks.
#
# Renaming a table keeps its rows (ALTER TABLE ... RENAME); the foreign keys that point at it
# (inference records, a release's placements, placements' own links) follow it.

from django.db import migrations, models
from django.utils import timezone

MOVED = ("placement", "servingprofile", "inferencerecord")

TASKS = {
    "apps.fleet.tasks.placements_expire_idle": "apps.serving.tasks.placements_expire_idle",
    "apps.fleet.tasks.placements_reconcile": "apps.serving.tasks.placements_reconcile",
    "apps.fleet.tasks.placements_preload_by_demand": "apps.serving.tasks.placements_preload_by_demand",
    "apps.fleet.tasks.inference_records_prune": "apps.serving.tasks.inference_records_prune",
}
ENTRIES = {
    "fleet-placements-expire-idle": "serving-placements-expire-idle",
    "fleet-placements-reconcile": "serving-placements-reconcile",
    "fleet-placements-preload-by-demand": "serving-placements-preload-by-demand",
    "fleet-inference-records-prune": "serving-inference-records-prune",
}


def _move_content_types(apps, source, target):
    ContentType = apps.get_model("contenttypes", "ContentType")
    AuditEvent = apps.get_model("core", "AuditEvent")
    for model in MOVED:
        moving = ContentType.objects.filter(app_label=source, model=model).first()
        if moving is None:
            continue
        # A row for the target made before this ran (an interrupted upgrade: `migrate serving
        # 0001`, then post_migrate) gives way to the moving one, which permissions and audit
        # entries point at; audit entries written against it meanwhile follow. Its permissions
        # go with it: roles are re-derived after migrate.
        for early in ContentType.objects.filter(app_label=target, model=model):
            AuditEvent.objects.filter(content_type=early).update(content_type=moving)
            early.delete()
        moving.app_label = target
        moving.save(update_fields=["app_label"])


def content_types_forward(apps, schema_editor):
    _move_content_types(apps, "fleet", "serving")


def content_types_backward(apps, schema_editor):
    _move_content_types(apps, "serving", "fleet")


def _move_beat_rows(apps, tasks, entries):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    changed = 0
    for old, new in tasks.items():
        changed += PeriodicTask.objects.filter(task=old).update(task=new)
    for old, new in entries.items():
        if PeriodicTask.objects.filter(name=new).exists():
            changed += PeriodicTask.objects.filter(name=old).delete()[0]
        else:
            changed += PeriodicTask.objects.filter(name=old).update(name=new)
    if changed:  # a running beat re-reads its schedule when this marker moves
        PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def beat_forward(apps, schema_editor):
    _move_beat_rows(apps, TASKS, ENTRIES)


def beat_backward(apps, schema_editor):
    _move_beat_rows(apps, {v: k for k, v in TASKS.items()}, {v: k for k, v in ENTRIES.items()})


class Migration(migrations.Migration):

    dependencies = [
        ('serving', '0001_initial'),
        ('fleet', '0004_serving_moved_out'),
        ('contenttypes', '0002_remove_content_type_name'),
        ('core', '0004_task_delivery_interrupted'),
        ('django_celery_beat', '0019_alter_periodictasks_options'),
    ]

    operations = [
        migrations.AlterModelTable(name='placement', table=None),
        migrations.AlterModelTable(name='servingprofile', table=None),
        migrations.AlterModelTable(name='inferencerecord', table=None),
        migrations.RemoveConstraint(model_name='placement', name='fleet_placement_one_active'),
        migrations.AddConstraint(
            model_name='placement',
            constraint=models.UniqueConstraint(condition=models.Q(('state__in', ['loaded', 'loading', 'requested', 'unloading'])), fields=('version', 'device'), name='serving_placement_one_active', violation_error_message='This version already has an active placement on this device.'),
        ),
        migrations.RenameIndex(
            model_name='inferencerecord', new_name='serving_inference_version_at', old_name='fleet_inference_version_at'
        ),
        migrations.RunPython(content_types_forward, content_types_backward),
        migrations.RunPython(beat_forward, beat_backward),
    ]
