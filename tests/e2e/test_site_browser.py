"""Every page: the light/dark toggle, the top bar on a phone, wide tables in replies."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.chat_pages import (
    LAPTOP,
    PHONE,
    create_exchange,
    sign_up,
    unique_username,
)
from tests.e2e.conftest import _watched_page

pytestmark = pytest.mark.e2e

SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"

# The theme on <html> when <body> first appears: before anything is painted.
RECORD_THEME_AT_FIRST_BODY_JS = """
new MutationObserver((_, observer) => {
  if (!document.body) return;
  window.__themeAtFirstBody = document.documentElement.dataset.theme || "system";
  observer.disconnect();
}).observe(document, { childList: true, subtree: true });
"""

DARK_BG = "rgb(15, 17, 21)"
LIGHT_BG = "rgb(246, 247, 249)"


@pytest.fixture
def light_system_page(browser):
    """A laptop page whose system prefers light; it fails the test on JS errors or CSP."""
    context, watch = _watched_page(browser, viewport=LAPTOP, color_scheme="light")
    context.add_init_script(RECORD_THEME_AT_FIRST_BODY_JS)
    yield watch.page
    context.close()
    watch.assert_clean()


@pytest.fixture
def dark_system_page(browser):
    context, watch = _watched_page(browser, viewport=LAPTOP, color_scheme="dark")
    yield watch.page
    context.close()
    watch.assert_clean()


def background(page: Page) -> str:
    return page.evaluate("getComputedStyle(document.body).backgroundColor")


# --- light/dark --------------------------------------------------------------------------
def test_the_theme_choice_survives_a_reload_and_applies_on_every_page(light_system_page, live_site):
    page = light_system_page
    sign_up(page, live_site.url, unique_username("theme"))
    toggle = page.get_by_test_id("theme-toggle")
    assert background(page) == LIGHT_BG
    expect(toggle).to_have_attribute("aria-pressed", "false")

    toggle.click()

    expect(toggle).to_have_attribute("aria-pressed", "true")
    assert background(page) == DARK_BG
    for path in ("/chat/", "/rooms/", "/voice/", "/accounts/", "/no/such/page"):
        page.goto(f"{live_site.url}{path}")
        # Set before the body was parsed: the first paint is already dark, no flash.
        assert page.evaluate("window.__themeAtFirstBody") == "dark", path
        assert background(page) == DARK_BG, path
        expect(page.get_by_test_id("theme-toggle")).to_have_attribute("aria-pressed", "true")

    page.get_by_test_id("theme-toggle").click()
    page.reload()
    assert page.evaluate("window.__themeAtFirstBody") == "light"
    assert background(page) == LIGHT_BG


def test_without_a_choice_the_theme_follows_the_system(dark_system_page, live_site):
    page = dark_system_page
    page.goto(f"{live_site.url}/accounts/login/")
    assert page.evaluate("document.documentElement.dataset.theme") is None
    assert background(page) == DARK_BG
    expect(page.get_by_test_id("theme-toggle")).to_have_attribute("aria-pressed", "true")

    page.get_by_test_id("theme-toggle").click()  # chose light on a dark system

    page.reload()
    assert background(page) == LIGHT_BG


# --- phone layout ------------------------------------------------------------------------
WIDE_TABLE = "\n".join(
    [
        "Latency by deployment:",
        "",
        "| Deployment region | Time to first token | Throughput (tokens per second)"
        " | Voice-to-voice latency | Interruptions | Availability |",
        "|---|---:|---:|---:|---:|---|",
        "| Frankfurt | 312 ms | 56.2 | 820 ms | 3 | 99.95% |",
        "| Singapore | 451 ms | 48.9 | 1010 ms | 7 | 99.90% |",
    ]
)

# Each word of each header cell sits on one line: a word broken across lines has two boxes.
# (A break at a space or a hyphen, "Voice-|to-voice", is between words.)
HEADER_WORDS_BROKEN_JS = """() => {
  const broken = [];
  for (const cell of document.querySelectorAll(".prose th")) {
    const text = cell.firstChild;
    if (!text || text.nodeType !== Node.TEXT_NODE) continue;
    for (const match of text.data.matchAll(/[\\p{L}\\p{N}]+/gu)) {
      const range = document.createRange();
      range.setStart(text, match.index);
      range.setEnd(text, match.index + match[0].length);
      if (range.getClientRects().length > 1) broken.push(match[0]);
    }
  }
  return broken;
}"""

# Every table is either narrow enough, or a scroll container inside the viewport.
CLIPPED_TABLES_JS = """() => [...document.querySelectorAll(".prose table")].filter((table) => {
  const box = table.getBoundingClientRect();
  const scrolls = ["auto", "scroll"].includes(getComputedStyle(table).overflowX);
  const outside = box.left < 0 || box.right > document.documentElement.clientWidth;
  return outside || (table.scrollWidth > table.clientWidth && !scrolls);
}).length"""

TOPBAR_ROWS_JS = """() => {
  const bar = document.querySelector("[data-testid=topbar]");
  const shown = [...bar.children].filter((child) =>
    child.getClientRects().length && getComputedStyle(child).position !== "absolute");
  const middles = shown.map((child) => {
    const box = child.getBoundingClientRect();
    return Math.round(box.top + box.height / 2);
  });
  return { height: bar.getBoundingClientRect().height, middles };
}"""


def assert_topbar_is_one_row(page: Page) -> None:
    bar = page.evaluate(TOPBAR_ROWS_JS)
    assert bar["height"] <= 60, bar
    assert max(bar["middles"]) - min(bar["middles"]) <= 4, bar


def test_on_a_phone_the_top_bar_is_one_row_and_wide_tables_scroll(phone_page, live_site):
    page = phone_page
    username = unique_username("phonebar")
    sign_up(page, live_site.url, username)
    for path in ("/rooms/", "/voice/", "/accounts/"):
        page.goto(f"{live_site.url}{path}")
        assert_topbar_is_one_row(page)
    path = create_exchange(live_site, username, question="Latency table?", answer=WIDE_TABLE)

    page.goto(f"{live_site.url}{path}")

    assert_topbar_is_one_row(page)
    table = page.locator(".prose table")
    expect(table).to_be_visible()
    assert page.evaluate(HEADER_WORDS_BROKEN_JS) == []
    assert page.evaluate(CLIPPED_TABLES_JS) == 0
    assert table.evaluate("t => t.scrollWidth > t.clientWidth")  # wide: it scrolls
    table.evaluate("t => { t.scrollLeft = t.scrollWidth; }")
    expect(page.locator(".prose th").last).to_be_in_viewport()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / "phone-wide-table.png")


def test_on_a_phone_the_links_fold_into_a_menu(phone_page, live_site):
    page = phone_page
    sign_up(page, live_site.url, unique_username("phonemenu"))
    toggle = page.get_by_test_id("nav-toggle")
    expect(page.get_by_test_id("nav-rooms")).to_be_hidden()

    toggle.click()

    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(page.get_by_test_id("nav-change-password")).to_be_visible()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / "phone-menu.png")
    page.keyboard.press("Escape")
    expect(page.get_by_test_id("nav-rooms")).to_be_hidden()
    toggle.click()
    page.get_by_test_id("nav-rooms").click()
    expect(page).to_have_url(f"{live_site.url}/rooms/")
    assert_topbar_is_one_row(page)


def test_on_a_laptop_the_links_stay_in_the_bar(page, live_site):
    sign_up(page, live_site.url, unique_username("laptopbar"))
    expect(page.get_by_test_id("nav-toggle")).to_be_hidden()
    expect(page.get_by_test_id("nav-rooms")).to_be_visible()
    expect(page.get_by_test_id("username")).to_be_visible()
    assert_topbar_is_one_row(page)
