"""Browser tests: Playwright's sync API drives Debian's chromium against pytest-django's
live_server. CI installs chromium with .ci/install-browser; without /usr/bin/chromium these
tests are skipped with the reason."""

import os
from pathlib import Path

import pytest

from tests.conftest import role_group  # noqa: F401  (used by the fixtures below and by tests)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]


@pytest.fixture(scope="module")
def chromium():
    """One browser per test module, so the event loop of Playwright's sync API is gone before
    other modules' tests run."""
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is not installed (CI installs it with .ci/install-browser; locally: apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in the test thread, which makes Django refuse ORM
    # calls there; the tests' ORM calls are still plain synchronous ones, so allow them.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(chromium, live_server):
    context = chromium.new_context(viewport={"width": 1440, "height": 900}, base_url=live_server.url)
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    yield page
    context.close()


@pytest.fixture
def login(page, django_user_model):
    """Sign in through the login form as a new user with the given role; returns the page."""

    def sign_in(role: str):
        name = role.replace(" ", "_").lower()
        user = django_user_model.objects.create_user(name, password="browser-pw")
        user.groups.add(role_group(role))
        page.goto("/accounts/login/")
        page.fill("input[name=username]", name)
        page.fill("input[name=password]", "browser-pw")
        page.click("button[type=submit]")
        page.wait_for_url("**/runs/")
        return page

    return sign_in

