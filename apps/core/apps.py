from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps
from django.db.models.signals import post_migrate


class CoreConfig(AppConfig):
    name = "apps.core"
    label = "core"
    verbose_name = "Core"

    def ready(self) -> None:
        # Imported here, not at the top: they import models, which Django readies only now.
        from apps.core import audit, outbox, roles, shutdown, workers  # noqa: F401  (connects signal receivers)

        post_migrate.connect(roles.sync_roles_after_migrate, dispatch_uid="moc-sync-roles")


class MocAdminConfig(admin_apps.AdminConfig):
    """Django's admin, with MOC's site: the admin role opens it (apps/core/admin_site.py)."""

    default = False
    default_site = "apps.core.admin_site.MocAdminSite"
