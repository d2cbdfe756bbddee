import django_filters

from apps.core.filters import FilterSet
from apps.deployments.domain.checks import CHECK_NAME_CHOICES, CHECK_STATUS_CHOICES
from apps.deployments.domain.states import DEPLOYMENT, RELEASE, VERIFICATION
from apps.deployments.domain.strategy import STRATEGY_CHOICES
from apps.deployments.models import CheckResult, Deployment, Release, VerificationRun


class DeploymentFilter(FilterSet):
    state = django_filters.ChoiceFilter(choices=DEPLOYMENT.choices)
    strategy = django_filters.ChoiceFilter(choices=STRATEGY_CHOICES)
    name = django_filters.CharFilter(lookup_expr="icontains")

    class Meta:
        model = Deployment
        fields = ["state", "strategy", "name", "registered_model"]


class ReleaseFilter(FilterSet):
    state = django_filters.ChoiceFilter(choices=RELEASE.choices)
    strategy = django_filters.ChoiceFilter(choices=STRATEGY_CHOICES)
    deployment_name = django_filters.CharFilter(field_name="deployment__name", label="Deployment name")

    class Meta:
        model = Release
        fields = ["deployment", "deployment_name", "state", "strategy", "model_version"]


class VerificationRunFilter(FilterSet):
    state = django_filters.ChoiceFilter(choices=VERIFICATION.choices)
    deployment = django_filters.NumberFilter(field_name="release__deployment")

    class Meta:
        model = VerificationRun
        fields = ["release", "deployment", "state"]


class CheckResultFilter(FilterSet):
    name = django_filters.ChoiceFilter(choices=CHECK_NAME_CHOICES)
    status = django_filters.ChoiceFilter(choices=CHECK_STATUS_CHOICES)

    class Meta:
        model = CheckResult
        fields = ["run", "name", "status", "required"]
