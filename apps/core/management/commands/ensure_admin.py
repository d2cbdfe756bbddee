from __future__ import annotations

import os
from typing import Any

from django.core.management.base import BaseCommand

from apps.core import services


class Command(BaseCommand):
    help = (
        "Create the admin user if missing (MOC_ADMIN_USER / MOC_ADMIN_PASSWORD / MOC_ADMIN_EMAIL) "
        "and print how to log in."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        username = os.environ.get("MOC_ADMIN_USER", "admin")
        password = os.environ.get("MOC_ADMIN_PASSWORD") or None
        email = os.environ.get("MOC_ADMIN_EMAIL", "admin@localhost")
        created, generated = services.admin_ensure(username=username, email=email, password=password)
        if not created:
            self.stdout.write(
                f"Admin user '{username}' already exists; log in with the password you were given."
            )
        elif generated:
            self.stdout.write(
                self.style.SUCCESS(f"Created admin user '{username}' with password: {generated}")
            )
            self.stdout.write("Keep it: it is not shown again (change it in Admin → Users).")
        else:
            self.stdout.write(f"Created admin user '{username}' with the password from MOC_ADMIN_PASSWORD.")
