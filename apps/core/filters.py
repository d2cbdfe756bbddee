"""FilterSets shared by the API and the pages, and the base every app's FilterSets derive from."""

from __future__ import annotations

import django_filters
from django import forms
from django.utils.translation import gettext_lazy as _
from django_filters.conf import settings as filter_settings

from apps.core.models import AuditEvent, TaskDelivery

# What an unset filter reads, in every list's filter form: it lets any value through.
ANY = "Any"
EMPTY_CHOICE = filter_settings.EMPTY_CHOICE_LABEL


class FilterSet(django_filters.FilterSet):
    """Every MOC FilterSet: a choice left unset reads "Any", however the filter was declared
    (django-filter writes "---------" and Django's yes/no select "Unknown")."""

    @property
    def form(self) -> forms.Form:
        form = super().form
        for field in form.fields.values():
            if isinstance(field.widget, forms.NullBooleanSelect):
                field.widget.choices = [("unknown", ANY), ("true", _("Yes")), ("false", _("No"))]
            elif getattr(field, "empty_label", None) == EMPTY_CHOICE:
                field.empty_label = ANY
                # The widget's choices read the label from the field they were made for, which
                # for a form's copy of a field is the original: hand it this field's own.
                field.widget.choices = field.choices
        return form


class AuditEventFilter(FilterSet):
    actor = django_filters.CharFilter(field_name="actor__username")
    object_type = django_filters.CharFilter(field_name="content_type__model")
    since = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    until = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = AuditEvent
        fields = ["action", "source", "actor", "object_type", "object_id", "api_key_prefix"]


class TaskDeliveryFilter(FilterSet):
    class Meta:
        model = TaskDelivery
        fields = ["state", "task_name", "queue"]
