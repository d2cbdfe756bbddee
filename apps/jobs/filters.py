import django_filters

from apps.core.filters import FilterSet
from apps.fleet.models import Device
from apps.jobs.domain.kinds import KIND_CHOICES
from apps.jobs.domain.states import JOB
from apps.jobs.models import Dataset, Job
from apps.models.models import ModelVersion


class JobFilter(FilterSet):
    state = django_filters.ChoiceFilter(choices=JOB.choices)
    kind = django_filters.ChoiceFilter(choices=KIND_CHOICES)
    queue = django_filters.CharFilter()
    # The related rows' labels need their model and node: fetched with them, not one by one.
    model_version = django_filters.ModelChoiceFilter(queryset=ModelVersion.objects.select_related("model"))
    dataset = django_filters.ModelChoiceFilter(queryset=Dataset.objects.all())
    device = django_filters.ModelChoiceFilter(queryset=Device.objects.select_related("node"))
    retry_of = django_filters.NumberFilter(label="Retries of this job (its id)")
    since = django_filters.IsoDateTimeFilter(
        field_name="created_at", lookup_expr="gte", label="Created since"
    )

    class Meta:
        model = Job
        fields = [
            "state",
            "kind",
            "queue",
            "model_version",
            "dataset",
            "device",
            "retry_of",
            "error_class",
            "since",
        ]
