"""The voice page: who may open it, and what it hands to static/js/voice.js."""

from __future__ import annotations

import json
import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from accounts.services import create_api_token
from voice import events, views

pytestmark = pytest.mark.django_db

PASSWORD = "pass-Word-123"
WORKLETS = ("js/voice-capture-worklet.js", "js/voice-playback-worklet.js")


@pytest.fixture
def ana():
    return get_user_model().objects.create_user("ana", password=PASSWORD)


@pytest.fixture
def ana_client(ana) -> Client:
    client = Client()
    client.force_login(ana)
    return client


def voice_config(body: str) -> dict:
    match = re.search(r'<script id="voice-config" type="application/json">(.*?)</script>', body)
    assert match, "the page has no voice-config"
    return json.loads(match.group(1))


def test_the_voice_page_needs_a_login():
    response = Client().get("/voice/")

    assert response.status_code == 302
    assert response.url == "/accounts/login/?next=/voice/"


def test_a_bearer_token_does_not_open_the_voice_page(ana):
    token = create_api_token(user=ana, name="script")[1]

    response = Client().get("/voice/", headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 302
    assert response.url.startswith("/accounts/login/")


def test_the_voice_page_gives_the_script_its_socket_and_audio_format(ana_client, settings):
    settings.CHAT_MAX_MESSAGE_CHARS = 500

    response = ana_client.get("/voice/")

    assert response.status_code == 200
    body = response.content.decode()
    assert voice_config(body) == {
        "wsPath": "/ws/voice/",
        "sampleRate": 24000,
        "frameMs": 20,
        "maxTextChars": 500,
    }
    assert 'maxlength="500"' in body


def test_the_voice_page_names_both_worklets_through_the_static_files(ana_client):
    body = ana_client.get("/voice/").content.decode()

    assert 'data-capture-worklet="/static/js/voice-capture-worklet.js"' in body
    assert 'data-playback-worklet="/static/js/voice-playback-worklet.js"' in body
    assert '<script type="module" src="/static/js/voice.js"></script>' in body


@pytest.mark.parametrize("path", [*WORKLETS, "js/voice-dsp.js", "js/voice.js"])
def test_the_voice_scripts_are_served_as_javascript(ana_client, path):
    # audioWorklet.addModule refuses a module without a JavaScript MIME type.
    response = ana_client.get(f"/static/{path}")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/javascript")


def test_the_navigation_links_to_the_voice_page_and_marks_it_current(ana_client):
    on_voice = ana_client.get("/voice/").content.decode()
    on_rooms = ana_client.get("/rooms/").content.decode()

    link = re.compile(r'<a href="/voice/" data-testid="nav-voice"\s*(aria-current="page")?>')
    assert link.search(on_voice).group(1) == 'aria-current="page"'
    assert link.search(on_rooms).group(1) is None


def test_the_voice_page_connects_only_to_its_own_host(ana_client):
    # The worklets load under script-src 'self'; nothing else is needed.
    response = ana_client.get("/voice/")

    header = response["Content-Security-Policy"]
    policy = dict(part.split(maxsplit=1) for part in header.split("; "))
    assert policy["script-src"] == "'self'"
    assert policy["connect-src"] == "'self' ws://testserver"


def test_the_pages_microphone_frames_fit_what_the_socket_takes(settings):
    frame_bytes = events.BYTES_PER_MS * views.FRAME_MS

    assert 20 <= views.FRAME_MS <= 40
    assert frame_bytes % 2 == 0
    assert frame_bytes <= settings.VOICE_MAX_FRAME_BYTES
    # 50 frames a second, plus playback reports every 100 ms, stay under the flood limit.
    per_10s = 10_000 // views.FRAME_MS + 10_000 // 100
    assert per_10s < settings.VOICE_MAX_FRAMES_PER_10S
