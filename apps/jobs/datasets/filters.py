import django_filters

from apps.core.filters import FilterSet
from apps.jobs.domain.datasets import FORMAT_CHOICES, SHAPE_CHOICES, SOURCE_CHOICES
from apps.jobs.domain.states import DATASET
from apps.jobs.models import Dataset


class DatasetFilter(FilterSet):
    state = django_filters.ChoiceFilter(choices=DATASET.choices)
    format = django_filters.ChoiceFilter(choices=FORMAT_CHOICES)
    shape = django_filters.ChoiceFilter(choices=SHAPE_CHOICES)
    source = django_filters.ChoiceFilter(choices=SOURCE_CHOICES)
    archived = django_filters.BooleanFilter()
    name = django_filters.CharFilter(lookup_expr="icontains", label="Name contains")

    class Meta:
        model = Dataset
        fields = ["state", "format", "shape", "source", "archived", "name"]
