"""Role-based permissions for the API, read from the role groups' Django permissions.

A session user acts with their own permissions. An API key acts with its role's
permissions, and never more than its owner currently has.
"""

from __future__ import annotations

from typing import Any

from rest_framework import permissions
from rest_framework.request import Request

from apps.core import roles
from apps.core.domain.roles import Role
from apps.core.models import ApiKey

_VERBS = {
    "GET": "view",
    "HEAD": "view",
    "OPTIONS": "view",
    "POST": "add",
    "PUT": "change",
    "PATCH": "change",
    "DELETE": "delete",
}


def request_has_perm(request: Request, perm: str) -> bool:
    user = request.user
    if not user or not user.is_authenticated:
        return False
    key = request.auth
    if isinstance(key, ApiKey):
        return key_has_perm(key, perm)
    return user.has_perm(perm)


def key_has_perm(key: ApiKey, perm: str) -> bool:
    """What an API key may do: its role's permission, never more than its owner has now."""
    return key.owner.has_perm(perm) and perm in roles.role_perms(Role(key.role))


def request_role(request: Request) -> Role | None:
    role = roles.role_of(request.user)
    key = request.auth
    if role is not None and isinstance(key, ApiKey):
        key_role = Role(key.role)
        return key_role if role.covers(key_role) else role
    return role


class RolePermission(permissions.BasePermission):
    """The model permission that matches the request's verb (`view_` for reads).

    A custom action that changes something needs `change_` unless the view says
    otherwise in `action_verbs = {"cancel": "change"}`.
    """

    def has_permission(self, request: Request, view: Any) -> bool:
        if not request.user or not request.user.is_authenticated:
            # Throttle before refusing: DRF checks permissions before throttles, so without
            # this anonymous calls would never be throttled, only answered 401 at full speed.
            # (Failed API keys never get here: KeyFailureThrottle counts them.)
            view.check_throttles(request)
            return False
        model = _model_of(view)
        if model is None:
            # Views without a table (the schema, "me") still need a role, not just a login.
            return request_role(request) is not None
        verb = _verb(request, view)
        return request_has_perm(request, f"{model._meta.app_label}.{verb}_{model._meta.model_name}")


def _model_of(view: Any) -> Any:
    queryset = getattr(view, "queryset", None)
    return getattr(queryset, "model", None)


def _verb(request: Request, view: Any) -> str:
    action = getattr(view, "action", None)
    overrides = getattr(view, "action_verbs", {})
    if action in overrides:
        return overrides[action]
    if action in {"list", "retrieve", "create", "update", "partial_update", "destroy", None}:
        return _VERBS.get(request.method or "GET", "change")
    return "view" if request.method in permissions.SAFE_METHODS else "change"


class KeysManagedByPeople(permissions.BasePermission):
    """API keys may be listed with a key, but made and revoked only in a person's session:
    otherwise a leaked key could mint itself a successor and outlive its revocation."""

    message = "API keys are created and revoked by people (a browser session), not by API keys."

    def has_permission(self, request: Request, view: Any) -> bool:
        if not request.user or not request.user.is_authenticated:
            return False
        return request.method in permissions.SAFE_METHODS or not isinstance(request.auth, ApiKey)
