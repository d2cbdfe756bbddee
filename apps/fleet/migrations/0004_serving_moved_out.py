# Placement, ServingProfile and InferenceRecord now belong to the serving app (serving.0001).
# State only: their tables and rows stay; serving.0002 renames the tables.

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('fleet', '0003_serving'),
        ('serving', '0001_initial'),
        ('deployments', '0002_release_placements_in_serving'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.RemoveField(model_name='placement', name='depends_on'),
                migrations.RemoveField(model_name='placement', name='device'),
                migrations.RemoveField(model_name='placement', name='displaced_by'),
                migrations.RemoveField(model_name='placement', name='requested_by'),
                migrations.RemoveField(model_name='placement', name='version'),
                migrations.RemoveField(model_name='servingprofile', name='version'),
                migrations.DeleteModel(name='InferenceRecord'),
                migrations.DeleteModel(name='Placement'),
                migrations.DeleteModel(name='ServingProfile'),
            ],
        ),
    ]
