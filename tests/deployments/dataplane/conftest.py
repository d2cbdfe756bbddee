"""Fixtures of the data plane's tests: API keys of each role, and caches emptied around each test
(they live in the process, which the tests share)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import pytest

from apps.core import services
from apps.core.domain.roles import Role
from apps.core.models import ApiKey
from apps.deployments import services as deployments
from apps.deployments.dataplane import invalidation
from apps.deployments.models import Deployment


@pytest.fixture(autouse=True)
def _empty_caches() -> Iterator[None]:
    invalidation.forget("all")
    yield
    invalidation.forget("all")


@pytest.fixture
def make_key(make_user: Callable[..., object]) -> Callable[..., tuple[ApiKey, str]]:
    """A key of `role` (its owner's role too, unless `owner_role`), limited to `grants` if any:
    the key and its secret."""

    def make(
        role: Role = Role.OPERATOR, *, owner_role: Role | None = None, grants: Iterable[Deployment] = ()
    ) -> tuple[ApiKey, str]:
        owner = make_user(owner_role or role)
        api_key, secret = services.api_key_create(
            owner=owner, name="data plane", role=role, acting_role=owner_role or role
        )
        for deployment in grants:
            deployments.key_grant_create(key=api_key, deployment=deployment)
        return api_key, secret

    return make
