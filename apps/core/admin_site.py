"""The admin site for MOC's admin role: the `admin` group opens it, not Django's is_staff flag,
so giving someone the role in one place is enough."""

from __future__ import annotations

from django.contrib.admin import AdminSite
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpRequest

from apps.core import roles
from apps.core.domain.roles import Role


class MocAdminSite(AdminSite):
    site_header = "MOC administration"
    site_title = "MOC admin"
    index_title = "Configure MOC"
    # Django's admin login form refuses accounts without is_staff; MOC decides by role.
    login_form = AuthenticationForm

    def has_permission(self, request: HttpRequest) -> bool:
        return request.user.is_active and roles.role_of(request.user) is Role.ADMIN
