# Devices a node stopped offering are retired (Device.retired_at) rather than only unavailable.
# Those registration already marked as gone are retired since they were last updated.

from django.db import migrations, models
from django.db.models import F

# The reason apps.fleet.registration gave a device its node's worker no longer found.
GONE_REASON = "not found when the node's worker last started"


def retire_gone(apps, schema_editor):
    Device = apps.get_model("fleet", "Device")
    Device.objects.filter(health="unavailable", health_reason=GONE_REASON).update(retired_at=F("updated_at"))


class Migration(migrations.Migration):

    dependencies = [
        ('fleet', '0004_serving_moved_out'),
    ]

    operations = [
        migrations.AddField(
            model_name='device',
            name='retired_at',
            field=models.DateTimeField(blank=True, db_index=True, help_text='Since when its node no longer offers it (its worker last started without it); empty while offered', null=True),
        ),
        migrations.RunPython(retire_gone, migrations.RunPython.noop),
    ]
