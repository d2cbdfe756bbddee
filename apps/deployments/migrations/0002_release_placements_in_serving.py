# A release's placements are serving's now (serving.0001). State only: the join table's
# placement_id column keeps pointing at the same rows, whose table serving.0002 renames.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('deployments', '0001_initial'),
        ('serving', '0001_initial'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.AlterField(
                    model_name='release',
                    name='placements',
                    field=models.ManyToManyField(blank=True, help_text='The replicas serving this release', related_name='releases', to='serving.placement'),
                ),
            ],
        ),
    ]
