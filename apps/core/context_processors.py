from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import reverse

from apps.core import roles

NAV = [
    ("overview", "Overview", "overview"),
    ("gpus", "GPUs", "fleet:devices"),
    ("serving", "Serving", "serving:placements"),
    ("models", "Models", "models:list"),
    ("deployments", "Deployments", "deployments:list"),
    ("jobs", "Jobs", "jobs:list"),
    ("datasets", "Datasets", "jobs:datasets"),
    ("goals", "Goals", "goals:list"),
    ("alerts", "Alerts", "alerts:list"),
    ("audit", "Audit", "core:audit"),
]


def moc(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"nav": [], "user_role": None}
    role = roles.role_of(user)
    return {
        "nav": [(key, label, reverse(name)) for key, label, name in NAV],
        "user_role": role.value if role else None,
    }
