"""Versions in the browser: regenerate and switch between answers; edit a question and resend."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.chat_pages import (
    body_of,
    conversation_path,
    expect_connected,
    last_reply,
    messages,
    send,
    sign_up,
    unique_username,
    wait_for_status,
)

pytestmark = pytest.mark.e2e


def two_turns(page: Page) -> None:
    for question in ("first question", "second question"):
        send(page, question)
        wait_for_status(last_reply(page), "complete")


def test_regenerate_keeps_versions_and_switching_shows_each(page, live_site):
    sign_up(page, live_site.url, unique_username("versions"))
    two_turns(page)
    first_answer = body_of(last_reply(page)).inner_text()

    last_reply(page).get_by_test_id("regenerate-button").click()

    wait_for_status(last_reply(page), "complete")
    expect(messages(page, "assistant")).to_have_count(2)
    expect(last_reply(page).get_by_test_id("version-label")).to_have_text("2/2")
    other = page.context.new_page()
    other.goto(live_site.url + conversation_path(page))
    expect_connected(other)
    expect(last_reply(other).get_by_test_id("version-label")).to_have_text("2/2")

    last_reply(page).get_by_test_id("previous-version").click()

    expect(last_reply(page).get_by_test_id("version-label")).to_have_text("1/2")
    expect(body_of(last_reply(page))).to_have_text(first_answer)
    expect(last_reply(other).get_by_test_id("version-label")).to_have_text("1/2")  # in sync
    page.reload()
    expect(last_reply(page).get_by_test_id("version-label")).to_have_text("1/2")


def test_edit_and_resend_starts_a_branch_and_the_old_one_stays(page, live_site):
    sign_up(page, live_site.url, unique_username("edit"))
    two_turns(page)
    question = messages(page, "user").last
    other = page.context.new_page()
    other.goto(live_site.url + conversation_path(page))
    expect_connected(other)

    question.get_by_test_id("edit-button").click()
    question.get_by_test_id("edit-input").fill("a better question")
    question.get_by_test_id("edit-send").click()

    wait_for_status(last_reply(page), "complete")
    expect(messages(page, "user")).to_have_count(2)
    expect(body_of(messages(page, "user").last)).to_have_text("a better question")
    expect(body_of(last_reply(page))).to_contain_text("Echo: a better question (turn 2)")
    expect(messages(page, "user").last.get_by_test_id("version-label")).to_have_text("2/2")
    expect(body_of(messages(other, "user").last)).to_have_text("a better question")  # in sync
    wait_for_status(last_reply(other), "complete")
    expect(messages(other, "assistant")).to_have_count(2)

    messages(page, "user").last.get_by_test_id("previous-version").click()

    expect(body_of(messages(page, "user").last)).to_have_text("second question")
    expect(body_of(last_reply(page))).to_contain_text("Echo: second question (turn 2)")
    expect(messages(page, "assistant")).to_have_count(2)
