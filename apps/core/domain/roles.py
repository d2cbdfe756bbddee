"""The three roles and what each may do, as plain data.

viewer reads everything; operator also acts (loads, runs, rolls out, silences);
admin also configures (alert rules, channels, users, keys of others).
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def covers(self, other: Role) -> bool:
        return self.rank >= other.rank


_RANK = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}

ROLE_CHOICES = [(r.value, r.value.capitalize()) for r in Role]


def highest(roles: set[Role]) -> Role | None:
    return max(roles, key=lambda r: r.rank, default=None)


def permission_codenames(role: Role, models: list[tuple[str, Role | None]]) -> set[str]:
    """Codenames (`view_job`, `change_job`, ...) a role holds over (model_name, write_role) pairs.

    `write_role` None means nobody writes the table by hand (the system does); admins
    still may, through the admin site, to repair.
    """
    codenames: set[str] = set()
    for model_name, write_role in models:
        codenames.add(f"view_{model_name}")
        may_write = role is Role.ADMIN or (write_role is not None and role.covers(write_role))
        if may_write:
            codenames |= {f"add_{model_name}", f"change_{model_name}", f"delete_{model_name}"}
    return codenames
