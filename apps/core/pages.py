"""Building blocks for the dashboard's pages, shared by every app."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.generic import ListView

from apps.core.domain.errors import Conflict

# A page's poll names at most this many objects (a GPUs page shows 25 nodes of a few devices).
POLL_IDS_MAX = 500


def ids_param(request: HttpRequest, name: str) -> list[int]:
    """The ids a poll names in its query (`?device=1&device=2`): whole numbers a database key can
    hold, at most POLL_IDS_MAX of them; anything else ("x", "²", 30 digits) is left out."""
    values = request.GET.getlist(name)[:POLL_IDS_MAX]
    return [int(v) for v in values if v.isascii() and v.isdigit() and len(v) <= 18]


def back_url(request: HttpRequest, fallback: str) -> str:
    """Where a button's form asked to go back to (its `next`: the page it was on) when that is a
    page of this site, over HTTPS when the request came so; else `fallback`."""
    target = request.POST.get("next", "")
    safe = url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return target if target and safe else fallback


def filters_given(request: HttpRequest) -> bool:
    """Whether a list page was asked for some filter (its `page` is not one: page 2 of a list is the
    same list as page 1)."""
    return any(v for k, v in request.GET.items() if k != "page")


def message_refusal(request: HttpRequest, exc: ValidationError | Conflict) -> None:
    """Show why a button's action was refused, as the next page's error message."""
    text = " ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
    messages.error(request, text)


class FilteredListView(ListView):
    """A paginated list filtered by the same FilterSet the API uses (NetBox's habit).

    Subclasses set `filterset_class`, `queryset` and `template_name`; the template extends
    core/list_base.html and gets `filter` (the bound FilterSet) and `filtered` (whether
    any filter is active, to word the empty state).
    """

    filterset_class: Any = None
    paginate_by = 50
    section = ""

    def get_queryset(self) -> QuerySet:
        queryset = super().get_queryset()
        self.filterset = self.filterset_class(
            self.request.GET or None, queryset=queryset, request=self.request
        )
        return self.filterset.qs if self.filterset.is_bound and self.filterset.is_valid() else queryset

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        params = self.request.GET.copy()
        params.pop("page", None)
        context.update(
            filter=self.filterset,
            filtered=filters_given(self.request),
            querystring=params.urlencode(),
            section=self.section,
        )
        return context
