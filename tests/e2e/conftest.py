"""Browser fixtures: Debian's headless Chromium driven by Playwright, and a slow site.

Playwright's own browser downloads are never used: the tests run the system
Chromium at CHROMIUM_PATH (default /usr/bin/chromium; `make test` installs
Debian's package) and fail loudly without it: browser tests are never skipped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright import sync_api as playwright_sync  # noqa: E402

from tests.conftest import LiveSite
from tests.e2e.chat_pages import LAPTOP, PHONE, SLOW_TOKENS, SLOW_TPS, SLOW_TTFT_MS
from tests.support import processes

CHROMIUM_PATH = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Replies on the slow site take seconds, so waits allow more than the default 5 s.
playwright_sync.expect.set_options(timeout=15_000)


@pytest.fixture(scope="module")
def playwright():
    # Module scope: Playwright's sync API runs an event loop in the main thread
    # while open, which would break async tests collected after this module.
    # One per module, shared by every browser the module launches.
    if not Path(CHROMIUM_PATH).exists():
        pytest.fail(
            f"no Chromium at {CHROMIUM_PATH}: run `make chromium` (apt-get install chromium)"
        )
    with playwright_sync.sync_playwright() as playwright:
        yield playwright


def launch_chromium(playwright, *extra_args: str):
    """The system Chromium, headless, with CHROMIUM_ARGS and `extra_args`."""
    return playwright.chromium.launch(
        executable_path=CHROMIUM_PATH, args=[*CHROMIUM_ARGS, *extra_args]
    )


@pytest.fixture(scope="module")
def browser(playwright):
    browser = launch_chromium(playwright)
    yield browser
    browser.close()


# Every page of a watched context reports what its Content-Security-Policy blocked.
REPORT_CSP_VIOLATIONS_JS = """
document.addEventListener("securitypolicyviolation", (event) => {
  const blocked = event.blockedURI || "inline";
  window.__reportCspViolation(`${event.effectiveDirective} blocked ${blocked}`);
});
"""


@dataclass
class PageWatch:
    """A page, and what went wrong on it: JavaScript errors and CSP violations."""

    page: playwright_sync.Page
    errors: list[str] = field(default_factory=list)
    csp_violations: list[str] = field(default_factory=list)

    def assert_clean(self) -> None:
        assert not self.errors, f"JavaScript errors on the page: {self.errors}"
        assert not self.csp_violations, f"CSP violations on the page: {self.csp_violations}"


def _watched_page(browser, **context_options) -> tuple:
    context = browser.new_context(**context_options)
    context.set_default_timeout(15_000)
    violations: list[str] = []
    context.expose_binding("__reportCspViolation", lambda _source, text: violations.append(text))
    context.add_init_script(REPORT_CSP_VIOLATIONS_JS)
    watch = PageWatch(page=context.new_page(), csp_violations=violations)
    watch.page.on("pageerror", lambda exc: watch.errors.append(str(exc)))
    return context, watch


@pytest.fixture
def page_watch(browser):
    """A laptop-sized page; the test fails on a JavaScript error or a CSP violation."""
    context, watch = _watched_page(browser, viewport=LAPTOP)
    yield watch
    context.close()
    watch.assert_clean()


@pytest.fixture
def page(page_watch):
    return page_watch.page


@pytest.fixture
def other_page(browser):
    """A second person's laptop page: a browser context of its own (its own cookies)."""
    context, watch = _watched_page(browser, viewport=LAPTOP)
    yield watch.page
    context.close()
    watch.assert_clean()


@pytest.fixture
def phone_page(browser):
    """A phone-sized, touch page; it fails the test as `page` does."""
    context, watch = _watched_page(browser, viewport=PHONE, is_mobile=True, has_touch=True)
    yield watch.page
    context.close()
    watch.assert_clean()


@pytest.fixture(scope="session")
def slow_site(tmp_path_factory) -> LiveSite:
    """Its own fakeai and daphne, with replies slow enough to stop or reload mid-way."""
    db_path = tmp_path_factory.mktemp("slow") / "db.sqlite3"
    with processes.fakeai(ttft_ms=SLOW_TTFT_MS, tps=SLOW_TPS, tokens=SLOW_TOKENS) as fakeai_url:
        env = processes.site_env(fakeai_url=fakeai_url, database_url=f"sqlite:///{db_path}")
        processes.manage("migrate", "--noinput", env=env)
        with processes.daphne(env=env) as url:
            yield LiveSite(url=url, fakeai_url=fakeai_url, env=env)
