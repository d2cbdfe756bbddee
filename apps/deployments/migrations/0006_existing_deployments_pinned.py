"""Deployments made before scale to zero keep their replicas loaded: 0005 added `pinned` with the
default of new deployments (False, on demand), which would have made every existing deployment
scale to zero on upgrade, its REST callers included, and left the engine no longer loading back
the replicas it lost with a node. An operator unpins one to have it scale to zero."""

from django.apps.registry import Apps
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor


def pin_existing(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    apps.get_model("deployments", "Deployment").objects.update(pinned=True)


class Migration(migrations.Migration):
    dependencies = [
        ("deployments", "0005_on_demand_grants_minutes"),
    ]

    operations = [
        # Back: nothing to undo (0005's own reverse drops the column).
        migrations.RunPython(pin_existing, migrations.RunPython.noop),
    ]
