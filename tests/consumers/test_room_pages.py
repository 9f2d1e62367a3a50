"""Room pages: who may enter which room, creating rooms, lists, older pages, invites, members."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from rooms import selectors, services
from rooms.models import Membership, Room, RoomMessage

pytestmark = [pytest.mark.django_db, pytest.mark.services]

PASSWORD = "pass-Word-123"


def make_user(username: str):
    return get_user_model().objects.create_user(username, password=PASSWORD)


def client_of(user, *, enforce_csrf_checks: bool = False) -> Client:
    client = Client(enforce_csrf_checks=enforce_csrf_checks)
    client.force_login(user)
    return client


@pytest.fixture
def ana():
    return make_user("ana")


@pytest.fixture
def bo():
    return make_user("bo")


@pytest.fixture
def ana_client(ana) -> Client:
    return client_of(ana)


@pytest.fixture
def bo_client(bo) -> Client:
    return client_of(bo)


@pytest.fixture
def lobby(ana) -> Room:
    """A public room of ana's."""
    return services.create_room(owner=ana, name="Lobby", is_private=False)


@pytest.fixture
def secret(ana) -> Room:
    """A private room of ana's."""
    return services.create_room(owner=ana, name="Secret plans", is_private=True)


def is_member(room: Room, user) -> bool:
    return Membership.objects.filter(room=room, user=user).exists()


def client_config(response) -> dict:
    match = re.search(
        r'<script id="room-config" type="application/json">(.*?)</script>',
        response.content.decode(),
    )
    assert match, "the page has no room-config"
    return json.loads(match.group(1))


# --- logging in ------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/rooms/", "/rooms/new/", "/rooms/lobby/", "/rooms/join/abc/"])
def test_room_pages_need_a_login(path):
    response = Client().get(path)

    assert response.status_code == 302
    assert response.url == f"/accounts/login/?next={path}"


def test_the_top_bar_links_to_the_rooms_and_marks_them_current(ana_client):
    chat = ana_client.get("/chat/").content.decode()
    rooms = ana_client.get("/rooms/").content.decode()

    assert re.search(r'href="/rooms/" data-testid="nav-rooms"\s*>Rooms<', chat)
    assert re.search(r'href="/rooms/" data-testid="nav-rooms"\s*aria-current="page">Rooms<', rooms)


# --- entering a room ---------------------------------------------------------------------------
def test_an_unknown_room_is_a_404(ana_client):
    response = ana_client.get("/rooms/no-such-room/")

    assert response.status_code == 404
    assert "Not found" in response.content.decode()


def test_entering_a_public_room_makes_you_a_member(lobby, bo, bo_client):
    response = bo_client.get(f"/rooms/{lobby.slug}/")

    assert response.status_code == 200
    assert is_member(lobby, bo)
    assert Membership.objects.get(room=lobby, user=bo).role == Membership.Role.MEMBER


def test_a_private_room_refuses_a_stranger_and_tells_them_to_ask_for_an_invite(secret, bo_client):
    response = bo_client.get(f"/rooms/{secret.slug}/")

    assert response.status_code == 403
    body = response.content.decode()
    assert "This room is private. Ask its owner for an invite link." in body
    assert "Secret plans" not in body  # a stranger learns nothing of the room
    assert not Membership.objects.filter(room=secret).exclude(user=secret.owner).exists()


def test_a_member_enters_a_private_room(secret, bo, bo_client):
    services.join_by_invite(user=bo, code=secret.invite_code)

    response = bo_client.get(f"/rooms/{secret.slug}/")

    assert response.status_code == 200
    assert "Secret plans" in response.content.decode()


def test_a_member_removed_from_a_private_room_is_refused(secret, ana, bo, bo_client):
    services.join_by_invite(user=bo, code=secret.invite_code)
    services.remove_member(room=secret, by=ana, user_id=bo.pk)

    assert bo_client.get(f"/rooms/{secret.slug}/").status_code == 403


def test_the_room_page_shows_authors_and_the_ai_messages_stored_html(lobby, ana, bo, ana_client):
    RoomMessage.objects.create(room=lobby, author=bo, role="user", content="<b>hi</b> @ai")
    RoomMessage.objects.create(
        room=lobby, role="assistant", status="complete", content="**bold** <script>x</script>"
    )

    body = ana_client.get(f"/rooms/{lobby.slug}/").content.decode()

    authors = re.findall(r'data-testid="message-author">([^<]*)<', body)
    assert authors == ["bo", "AI"]
    assert "&lt;b&gt;hi&lt;/b&gt; @ai" in body
    assert "<strong>bold</strong>" in body
    assert "<script>x</script>" not in body


def test_the_room_page_tells_its_script_who_you_are_and_whether_you_own_the_room(
    lobby, ana, bo, ana_client, bo_client
):
    owner = client_config(ana_client.get(f"/rooms/{lobby.slug}/"))
    member = client_config(bo_client.get(f"/rooms/{lobby.slug}/"))

    assert owner["wsPath"] == f"/ws/room/{lobby.slug}/"
    assert (owner["userId"], owner["isOwner"], owner["ownerId"]) == (ana.pk, True, ana.pk)
    assert (member["userId"], member["isOwner"], member["ownerId"]) == (bo.pk, False, ana.pk)
    assert member["aiMode"] == "every"


def test_only_the_owner_sees_the_link_to_manage_members(lobby, ana_client, bo_client):
    link = 'data-testid="manage-members"'
    assert link in ana_client.get(f"/rooms/{lobby.slug}/").content.decode()
    assert link not in bo_client.get(f"/rooms/{lobby.slug}/").content.decode()


# --- creating a room ----------------------------------------------------------------------------
def test_creating_a_room_makes_you_its_owner_and_opens_it(ana, ana_client):
    response = ana_client.post(
        "/rooms/new/",
        {
            "name": "Book club",
            "visibility": "private",
            "ai_mode": "mention",
            "system_prompt": "  Talk like a librarian.  ",
        },
    )

    room = Room.objects.get()
    assert response.status_code == 302 and response.url == f"/rooms/{room.slug}/"
    assert (room.name, room.slug, room.owner) == ("Book club", "book-club", ana)
    assert room.is_private and room.ai_mode == "mention"
    assert room.system_prompt == "Talk like a librarian."
    assert Membership.objects.get(room=room, user=ana).role == Membership.Role.OWNER


def test_a_new_room_needs_a_name(ana_client):
    response = ana_client.post(
        "/rooms/new/", {"name": "   ", "visibility": "public", "ai_mode": "every"}
    )

    assert response.status_code == 200
    assert 'data-testid="field-error"' in response.content.decode()
    assert not Room.objects.exists()


def test_a_room_named_like_a_page_gets_another_address(ana):
    for name in ("New", "Join"):
        room = services.create_room(owner=ana, name=name, is_private=False)

        assert room.slug not in services.RESERVED_SLUGS
        assert room.slug.startswith(f"{name.lower()}-")


# --- the list ------------------------------------------------------------------------------------
def test_the_list_shows_your_rooms_and_the_public_rooms_you_are_not_in(ana, bo, ana_client):
    lobby = services.create_room(owner=ana, name="Lobby", is_private=False)
    services.create_room(owner=ana, name="Secret plans", is_private=True)
    garden = services.create_room(owner=bo, name="Garden", is_private=False)
    services.create_room(owner=bo, name="Bo's diary", is_private=True)
    services.join(room=garden, user=make_user("cy"))
    services.join(room=lobby, user=bo)
    # Most recently active first.
    now = timezone.now()
    for minutes_ago, name in enumerate(["Secret plans", "Lobby", "Garden", "Bo's diary"]):
        Room.objects.filter(name=name).update(updated_at=now - timedelta(minutes=minutes_ago))

    body = ana_client.get("/rooms/").content.decode()

    mine, public = body.split('id="public-rooms-heading"')
    assert re.findall(r'data-testid="room-name">([^<]*)<', mine) == ["Secret plans", "Lobby"]
    assert re.findall(r'data-testid="room-name">([^<]*)<', public) == ["Garden"]
    assert re.findall(r'data-testid="room-members">([^<]*)<', mine) == ["1 member", "2 members"]
    assert re.findall(r'data-testid="room-members">([^<]*)<', public) == ["2 members"]
    assert "diary" not in body


def test_a_rooms_member_count_counts_everyone_not_just_you(ana, bo):
    lobby = services.create_room(owner=ana, name="Lobby", is_private=False)
    services.join(room=lobby, user=bo)
    services.join(room=lobby, user=make_user("cy"))

    mine, public = selectors.rooms_for(bo)

    assert [(room.name, room.member_count) for room in mine] == [("Lobby", 3)]
    assert public == []


def test_an_empty_list_invites_you_to_create_a_room(ana_client):
    body = ana_client.get("/rooms/").content.decode()

    assert 'data-testid="my-rooms-empty"' in body
    assert 'data-testid="public-rooms-empty"' in body
    assert 'href="/rooms/new/"' in body


# --- older messages -------------------------------------------------------------------------------
def make_history(room: Room, author, count: int) -> list[RoomMessage]:
    return [
        RoomMessage.objects.create(
            room=room,
            author=author if number % 2 == 0 else None,
            role="user" if number % 2 == 0 else "assistant",
            status="complete",
            content=f"message {number}",
        )
        for number in range(count)
    ]


def shown_numbers(html: str) -> list[str]:
    return re.findall(r"message (\d+)", html)


def test_a_long_room_opens_on_its_newest_page(settings, lobby, ana, ana_client):
    settings.ROOM_PAGE_MESSAGES = 10
    history = make_history(lobby, ana, 25)

    body = ana_client.get(f"/rooms/{lobby.slug}/").content.decode()

    assert shown_numbers(body) == [str(n) for n in range(15, 25)]
    assert f'data-before="{history[15].pk}"' in body


def test_older_pages_load_in_order_until_the_first_message(settings, lobby, ana, ana_client):
    settings.ROOM_PAGE_MESSAGES = 10
    history = make_history(lobby, ana, 25)
    url = f"/rooms/{lobby.slug}/messages/"

    second = ana_client.get(url, {"before": history[15].pk}).json()
    third = ana_client.get(url, {"before": second["oldest_id"]}).json()

    assert shown_numbers(second["html"]) == [str(n) for n in range(5, 15)]
    assert second["has_more"] is True and second["oldest_id"] == history[5].pk
    assert shown_numbers(third["html"]) == [str(n) for n in range(0, 5)]
    assert third["has_more"] is False
    assert "<p>message 1</p>" in third["html"]  # AI messages as stored HTML
    assert 'data-testid="message-author">You<' in third["html"]


def test_older_messages_of_a_private_room_are_refused_to_non_members(secret, ana, bo_client):
    history = make_history(secret, ana, 3)

    response = bo_client.get(f"/rooms/{secret.slug}/messages/", {"before": history[2].pk})

    assert response.status_code == 403
    assert "message 0" not in response.content.decode()


@pytest.mark.parametrize("before", ["", "abc", "-1", "１２"])
def test_older_messages_need_a_message_id(lobby, ana_client, before):
    response = ana_client.get(f"/rooms/{lobby.slug}/messages/", {"before": before})

    assert response.status_code == 400 and response.json()["code"] == "invalid_event"


# --- invite links ---------------------------------------------------------------------------------
def test_an_invite_link_shows_the_room_and_a_join_button_without_joining(secret, bo, bo_client):
    response = bo_client.get(f"/rooms/join/{secret.invite_code}/")

    body = response.content.decode()
    assert response.status_code == 200
    assert 'data-testid="invite-room-name">Secret plans<' in body
    assert 'data-testid="join-room"' in body
    assert not is_member(secret, bo)


def test_joining_through_an_invite_link_opens_the_private_room(secret, bo, bo_client):
    response = bo_client.post(f"/rooms/join/{secret.invite_code}/")

    assert response.status_code == 302 and response.url == f"/rooms/{secret.slug}/"
    assert is_member(secret, bo)
    assert bo_client.get(response.url).status_code == 200


def test_an_invite_link_tells_a_member_they_are_in_already(secret, ana_client):
    body = ana_client.get(f"/rooms/join/{secret.invite_code}/").content.decode()

    assert 'data-testid="open-room"' in body
    assert 'data-testid="join-room"' not in body


def test_an_unknown_invite_code_is_a_404(bo_client):
    assert bo_client.get("/rooms/join/not-a-code/").status_code == 404
    assert bo_client.post("/rooms/join/not-a-code/").status_code == 404


def test_a_revoked_invite_link_is_a_404_and_joins_nobody(secret, ana, bo, bo_client):
    old_code = secret.invite_code
    ana_client = client_of(ana)

    ana_client.post(f"/rooms/{secret.slug}/invite/revoke/")

    assert bo_client.get(f"/rooms/join/{old_code}/").status_code == 404
    assert bo_client.post(f"/rooms/join/{old_code}/").status_code == 404
    assert not is_member(secret, bo)


# --- the owner's members page ---------------------------------------------------------------------
def test_the_members_page_lists_members_and_the_invite_link(secret, ana, bo, ana_client):
    services.join_by_invite(user=bo, code=secret.invite_code)

    body = ana_client.get(f"/rooms/{secret.slug}/members/").content.decode()

    rows = re.findall(r'data-testid="member-row" data-user-id="(\d+)"', body)
    assert rows == [str(ana.pk), str(bo.pk)]
    assert f"http://testserver/rooms/join/{secret.invite_code}/" in body
    assert body.count('data-testid="remove-member"') == 1  # bo's; the owner stays


def test_the_owner_removes_a_member(secret, ana, bo, ana_client):
    services.join_by_invite(user=bo, code=secret.invite_code)

    response = ana_client.post(f"/rooms/{secret.slug}/members/{bo.pk}/remove/", follow=True)

    assert response.redirect_chain == [(f"/rooms/{secret.slug}/members/", 302)]
    assert "bo was removed from the room." in response.content.decode()
    assert not is_member(secret, bo)


def test_revoking_the_invite_link_shows_a_new_one(secret, ana_client):
    old_code = secret.invite_code

    response = ana_client.post(f"/rooms/{secret.slug}/invite/revoke/", follow=True)

    secret.refresh_from_db()
    body = response.content.decode()
    assert secret.invite_code != old_code
    assert f"/rooms/join/{secret.invite_code}/" in body
    assert old_code not in body


def test_the_owner_cannot_remove_themselves(secret, ana, ana_client):
    response = ana_client.post(f"/rooms/{secret.slug}/members/{ana.pk}/remove/")

    assert response.status_code == 403
    assert is_member(secret, ana)


def test_owner_actions_are_refused_to_a_member_with_a_403(lobby, ana, bo, bo_client):
    cy = make_user("cy")
    services.join(room=lobby, user=bo)
    services.join(room=lobby, user=cy)
    code = lobby.invite_code

    members_page = bo_client.get(f"/rooms/{lobby.slug}/members/")
    remove = bo_client.post(f"/rooms/{lobby.slug}/members/{cy.pk}/remove/")
    revoke = bo_client.post(f"/rooms/{lobby.slug}/invite/revoke/")

    assert (members_page.status_code, remove.status_code, revoke.status_code) == (403, 403, 403)
    assert code not in members_page.content.decode()
    assert is_member(lobby, cy)
    lobby.refresh_from_db()
    assert lobby.invite_code == code


def test_owner_actions_are_refused_to_a_stranger_of_a_private_room(secret, ana, bo_client):
    assert bo_client.get(f"/rooms/{secret.slug}/members/").status_code == 403
    assert bo_client.post(f"/rooms/{secret.slug}/members/{ana.pk}/remove/").status_code == 403
    assert bo_client.post(f"/rooms/{secret.slug}/invite/revoke/").status_code == 403


def test_owner_actions_are_posts(secret, ana, bo, ana_client):
    services.join_by_invite(user=bo, code=secret.invite_code)

    assert ana_client.get(f"/rooms/{secret.slug}/members/{bo.pk}/remove/").status_code == 405
    assert ana_client.get(f"/rooms/{secret.slug}/invite/revoke/").status_code == 405
    assert is_member(secret, bo)


# --- CSRF -----------------------------------------------------------------------------------------
def test_every_post_needs_a_csrf_token(secret, ana, bo):
    services.join_by_invite(user=bo, code=secret.invite_code)
    code = secret.invite_code
    owner = client_of(ana, enforce_csrf_checks=True)
    stranger = client_of(make_user("cy"), enforce_csrf_checks=True)

    refused = [
        owner.post("/rooms/new/", {"name": "X", "visibility": "public", "ai_mode": "every"}),
        owner.post(f"/rooms/{secret.slug}/members/{bo.pk}/remove/"),
        owner.post(f"/rooms/{secret.slug}/invite/revoke/"),
        stranger.post(f"/rooms/join/{code}/"),
    ]

    assert [response.status_code for response in refused] == [403] * 4
    assert list(Room.objects.values_list("name", flat=True)) == ["Secret plans"]
    assert is_member(secret, bo)
    assert Membership.objects.filter(room=secret).count() == 2
    secret.refresh_from_db()
    assert secret.invite_code == code


def test_the_forms_carry_a_csrf_token(secret, ana, bo, ana_client, bo_client):
    services.join_by_invite(user=bo, code=secret.invite_code)
    stranger = client_of(make_user("cy"))
    pages = [
        ana_client.get("/rooms/new/"),
        ana_client.get(f"/rooms/{secret.slug}/members/"),
        stranger.get(f"/rooms/join/{secret.invite_code}/"),
    ]

    for page in pages:
        assert 'name="csrfmiddlewaretoken"' in page.content.decode()
