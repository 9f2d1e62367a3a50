"""The staff latency dashboard (/ops/latency/): who may see it, and what it says."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from chat.models import Conversation, Message
from realtime import dashboard
from voice.models import VoiceSession, VoiceTurn

pytestmark = pytest.mark.django_db

URL = "/ops/latency/"


def client_for(username: str, *, staff: bool) -> Client:
    user = get_user_model().objects.create_user(username, password="pass-Word-123")
    user.is_staff = staff
    user.save()
    client = Client()
    client.force_login(user)
    return client


def answers(ttfts: list[float], *, age: timedelta = timedelta(minutes=5)) -> None:
    owner = get_user_model().objects.create_user(f"asker{len(ttfts)}{age.seconds}")
    conversation = Conversation.objects.create(owner=owner, title="t")
    for ttft in ttfts:
        message = Message.objects.create(
            conversation=conversation, role="assistant", content="a", ttft_ms=ttft
        )
        Message.objects.filter(pk=message.pk).update(created_at=timezone.now() - age)


def test_signed_out_people_are_sent_to_log_in():
    response = Client().get(URL)
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_people_who_are_not_staff_get_403():
    assert client_for("bea", staff=False).get(URL).status_code == 403


def test_staff_see_percentiles_of_stored_time_to_first_token():
    answers([float(ms) for ms in range(100, 1100, 10)])  # 100 values, 100..1090 ms
    page = client_for("sam", staff=True).get(URL)
    assert page.status_code == 200
    chat = next(s for name, series in page.context["sections"] if name == "Chat" for s in series)
    assert chat.title == "Time to first token"
    assert chat.count == 100
    assert chat.p50 == pytest.approx(595.0)
    assert chat.p99 == pytest.approx(1080.1)
    assert b'data-title="Time to first token"' in page.content
    assert b"<polyline" in page.content


def test_the_window_leaves_out_older_samples():
    answers([100.0], age=timedelta(minutes=5))
    answers([900.0], age=timedelta(hours=3))
    client = client_for("sam", staff=True)
    within_hour = client.get(URL, {"window": "1h"}).context["sections"]
    within_day = client.get(URL, {"window": "24h"}).context["sections"]
    assert dict(within_hour)["Chat"][0].count == 1
    assert dict(within_day)["Chat"][0].count == 2


def test_voice_turns_appear_with_their_voice_to_voice_latency():
    user = get_user_model().objects.create_user("talker")
    session = VoiceSession.objects.create(user=user, model="fakeai", vad_backend="foreground")
    now = timezone.now()
    for index, ms in enumerate([700.0, 800.0, 900.0], start=1):
        VoiceTurn.objects.create(
            session=session,
            index=index,
            status="completed",
            voice_to_voice_ms=ms,
            started_at=now,
            ended_at=now,
        )
    sections = dict(client_for("sam", staff=True).get(URL).context["sections"])
    voice = sections["Voice"][0]
    assert (voice.title, voice.count, voice.p50) == ("Voice to voice", 3, 800.0)


def test_an_empty_window_says_so():
    page = client_for("sam", staff=True).get(URL, {"window": "1h"})
    assert b'data-testid="empty"' in page.content


def test_percentile_interpolates_between_ranks():
    assert dashboard.percentile([], 50) is None
    assert dashboard.percentile([10.0], 99) == 10.0
    assert dashboard.percentile([0.0, 10.0], 50) == 5.0
    assert dashboard.percentile([1.0, 2.0, 3.0, 4.0], 100) == 4.0


def test_the_dashboard_has_no_inline_styles_or_scripts():
    from tests.consumers.test_security import inline_code_in

    answers([120.0, 240.0])
    assert inline_code_in(client_for("sam", staff=True).get(URL)) == []
