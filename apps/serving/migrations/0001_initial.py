# Serving becomes its own app: Placement, ServingProfile and InferenceRecord move here from fleet.
#
# This migration changes no table: it only tells Django's model state that the three models now
# belong to `serving`, still in their fleet_* tables (db_table) with their old constraint and index
# names. fleet.0004 then forgets them on fleet's side (state only too), and serving.0002 renames
# the tables, constraint and index to serving_*, moves their content types (so permissions and
# audit entries keep pointing at their rows) and the periodic tasks' rows. No row is copied.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('fleet', '0003_serving'),
        ('registry', '0002_discovery_validation_vram'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.CreateModel(
                    name='Placement',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('created_at', models.DateTimeField(auto_now_add=True, db_index=True)),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                        ('state', models.CharField(choices=[('requested', 'Requested'), ('loading', 'Loading'), ('loaded', 'Loaded'), ('unloading', 'Unloading'), ('unloaded', 'Unloaded'), ('failed', 'Failed'), ('lost', 'Lost')], db_index=True, default='requested', max_length=16)),
                        ('reserved_bytes', models.PositiveBigIntegerField(help_text='Memory held for it on the device while active')),
                        ('measured_bytes', models.PositiveBigIntegerField(blank=True, help_text='What loading it really took, as the worker measured', null=True)),
                        ('pinned', models.BooleanField(default=False, help_text='Never evicted to make room')),
                        ('keep_alive_s', models.PositiveIntegerField(default=300, help_text='Unloaded after this long unused')),
                        ('last_used_at', models.DateTimeField(blank=True, null=True)),
                        ('use_count', models.PositiveBigIntegerField(default=0)),
                        ('loaded_at', models.DateTimeField(blank=True, null=True)),
                        ('ended_at', models.DateTimeField(blank=True, help_text='When it reached a final state', null=True)),
                        ('error', models.TextField(blank=True)),
                        ('error_class', models.CharField(blank=True, db_index=True, help_text='Why it failed, as a class', max_length=32)),
                        ('end_reason', models.CharField(blank=True, help_text='Why it was unloaded: keep-alive, evicted for another, asked', max_length=300)),
                        ('load_seconds', models.FloatField(blank=True, help_text='What loading it took on the worker', null=True)),
                        ('priority', models.FloatField(default=0.0, help_text='Its eviction priority (GDSF): lowest goes first when room is needed')),
                        ('depends_on', models.ForeignKey(blank=True, help_text="The placement it is built on (an adapter's base), loaded first on the same device", null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='dependents', to='serving.placement')),
                        ('device', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='placements', to='fleet.device')),
                        ('displaced_by', models.ForeignKey(blank=True, help_text='The placement it is being evicted for: that one loads only once this one is gone', null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='displaced', to='serving.placement')),
                        ('requested_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                        ('version', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='placements', to='registry.modelversion')),
                    ],
                    options={
                        'ordering': ['-created_at'],
                        'db_table': 'fleet_placement',
                    },
                ),
                migrations.CreateModel(
                    name='InferenceRecord',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('at', models.DateTimeField(db_index=True)),
                        ('task', models.CharField(max_length=16)),
                        ('outcome', models.CharField(db_index=True, help_text='ok, or why not', max_length=16)),
                        ('error_class', models.CharField(blank=True, max_length=32)),
                        ('queue_ms', models.FloatField(blank=True, help_text='From the web process sending it to a worker thread starting it', null=True)),
                        ('compute_ms', models.FloatField(blank=True, null=True)),
                        ('tokens_in', models.PositiveIntegerField(default=0)),
                        ('tokens_out', models.PositiveIntegerField(default=0)),
                        ('version', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='inferences', to='registry.modelversion')),
                        ('placement', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='inferences', to='serving.placement')),
                    ],
                    options={
                        'ordering': ['-at'],
                        'db_table': 'fleet_inferencerecord',
                    },
                ),
                migrations.CreateModel(
                    name='ServingProfile',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('created_at', models.DateTimeField(auto_now_add=True, db_index=True)),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                        ('max_concurrency', models.PositiveIntegerField(blank=True, help_text='Requests served at once (bulkhead); empty: the default', null=True)),
                        ('max_queue', models.PositiveIntegerField(blank=True, help_text='Requests that may wait for a slot; past it they get 429', null=True)),
                        ('request_timeout_s', models.FloatField(blank=True, help_text="A request's time limit", null=True)),
                        ('breaker_failures', models.PositiveIntegerField(blank=True, help_text="Failures in a row that open a placement's circuit breaker", null=True)),
                        ('breaker_open_s', models.FloatField(blank=True, help_text='How long an open breaker refuses before a probe', null=True)),
                        ('keep_alive_s', models.PositiveIntegerField(blank=True, help_text='New placements are unloaded after this long unused', null=True)),
                        ('pinned', models.BooleanField(default=False, help_text='New placements are never evicted')),
                        ('preload', models.BooleanField(default=False, help_text='Load it when a worker starts')),
                        ('preload_node', models.CharField(blank=True, help_text="Preload only on this node's workers; empty: on the first that starts", max_length=100)),
                        ('allow_pickle', models.BooleanField(default=False, help_text='Allow pickle weights (weights-only loader). Admins only: a pickle can carry code.')),
                        ('version', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='serving', to='registry.modelversion')),
                    ],
                    options={
                        'ordering': ['version__model__name', 'version__number'],
                        'db_table': 'fleet_servingprofile',
                    },
                ),
                migrations.AddConstraint(
                    model_name='placement',
                    constraint=models.UniqueConstraint(condition=models.Q(('state__in', ['loaded', 'loading', 'requested', 'unloading'])), fields=('version', 'device'), name='fleet_placement_one_active', violation_error_message='This version already has an active placement on this device.'),
                ),
                migrations.AddIndex(
                    model_name='inferencerecord',
                    index=models.Index(fields=['version', 'at'], name='fleet_inference_version_at'),
                ),
    
            ],
        ),
    ]
