import apps.core.domain.states
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('core', '0005_outbox_message'),
    ]

    operations = [
        migrations.AlterField(
            model_name='taskdelivery',
            name='state',
            field=models.CharField(choices=[('running', 'Running'), ('interrupted', 'Interrupted'), ('lost', 'Lost'), ('retrying', 'Retrying'), ('succeeded', 'Succeeded'), ('failed', 'Failed'), ('poisoned', 'Poisoned')], db_index=True, default=apps.core.domain.states.DeliveryState['RUNNING'], max_length=16),
        ),
    ]
