"""Browser tests: Debian's Chromium driven by Playwright against a real uvicorn process.

Playwright's sync API runs an event loop in this thread, and Django refuses ORM calls
from a thread with a running loop unless told otherwise; only these tests are told so.
That loop lives until the session ends, so tests/conftest.py runs these tests last.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

CHROMIUM = "/usr/bin/chromium"

from tests.integration.conftest import asgi_server  # noqa: E402,F401  (the same server fixture)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    # A hook, not a fixture: pytest-django opens the database in its own autouse fixtures,
    # which run before any fixture of ours.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    yield
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    if not shutil.which(CHROMIUM):
        message = "Debian's chromium is not installed (scripts/test.sh installs it as root)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)  # CI must prove the browser path, not skip it
        pytest.skip(message)
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ],
    }
