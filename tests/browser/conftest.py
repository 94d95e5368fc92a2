"""Browser tests: Playwright's sync API drives Debian's chromium against pytest-django's
live_server. CI installs chromium with .ci/install-browser; without /usr/bin/chromium these
tests are skipped with the reason."""

import os
from pathlib import Path

import pytest

# Playwright's sync API runs an event loop in this thread; the ORM calls the tests make around
# it are still synchronous and safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
SCREENSHOTS = Path(os.environ.get("LOOKOUT_SCREENSHOTS", "/tmp/screens"))


@pytest.fixture(scope="session")
def chromium():
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is not installed (CI installs it with .ci/install-browser; locally: apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(autouse=True)
def plain_static_storage(settings):
    """The live server serves static files from the finders; the manifest storage of a
    non-DEBUG build would want collectstatic first."""
    settings.STORAGES = {**settings.STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}


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
    from django.contrib.auth.models import Group

    def sign_in(role: str):
        name = role.replace(" ", "_").lower()
        user = django_user_model.objects.create_user(name, password="browser-pw")
        user.groups.add(Group.objects.get(name=role))
        page.goto("/accounts/login/")
        page.fill("input[name=username]", name)
        page.fill("input[name=password]", "browser-pw")
        page.click("button[type=submit]")
        page.wait_for_url("**/runs/")
        return page

    return sign_in


def screenshot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
