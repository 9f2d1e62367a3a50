"""Room pages: the list, creating one, the room itself, invite links, members."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages as flash
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from realtime import wire
from rooms import selectors, services
from rooms.forms import RoomForm
from rooms.models import Room

PRIVATE_ROOM = "This room is private. Ask its owner for an invite link."
OWNER_ONLY = "Only the room's owner can manage its members."


def _room_to_enter(request: HttpRequest, slug: str) -> Room:
    """The room of `slug` if the user may read it: 404 for none, 403 for a private one."""
    room = get_object_or_404(Room.objects.select_related("owner"), slug=slug)
    if not selectors.can_enter(room, request.user):
        raise PermissionDenied(PRIVATE_ROOM)
    return room


def _owned_room(request: HttpRequest, slug: str) -> Room:
    room = get_object_or_404(Room, slug=slug)
    if room.owner_id != request.user.pk:
        raise PermissionDenied(OWNER_ONLY)
    return room


@login_required
@require_GET
def room_list(request: HttpRequest) -> HttpResponse:
    mine, public = selectors.rooms_for(request.user)
    return render(request, "rooms/list.html", {"my_rooms": mine, "public_rooms": public})


@login_required
@require_http_methods(["GET", "POST"])
def new_room(request: HttpRequest) -> HttpResponse:
    form = RoomForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        room = services.create_room(owner=request.user, **form.room_fields())
        return redirect("rooms:room", slug=room.slug)
    return render(request, "rooms/new.html", {"form": form})


@login_required
@require_GET
def room_page(request: HttpRequest, slug: str) -> HttpResponse:
    """The room; entering a public room makes the person a member."""
    room = _room_to_enter(request, slug)
    services.join(room=room, user=request.user)
    page = selectors.message_page(room, before=None, limit=settings.ROOM_PAGE_MESSAGES)
    is_owner = room.owner_id == request.user.pk
    return render(
        request,
        "rooms/room.html",
        {
            "room": room,
            "page": page,
            "is_owner": is_owner,
            "client_config": {
                "wsPath": f"/ws/room/{room.slug}/",
                "userId": request.user.pk,
                "username": request.user.get_username(),
                "ownerId": room.owner_id,
                "isOwner": is_owner,
                "aiMode": room.ai_mode,
                "mention": "@ai",
                "maxMessageChars": settings.ROOM_MAX_MESSAGE_CHARS,
                "typingIntervalMs": round(settings.ROOM_TYPING_THROTTLE_SECONDS * 1000),
                "olderUrl": reverse("rooms:older", kwargs={"slug": room.slug}),
            },
        },
    )


@login_required
@require_GET
def older_messages(request: HttpRequest, slug: str) -> HttpResponse:
    """The page of messages before `?before=<message id>`, as HTML to put above the others."""
    room = _room_to_enter(request, slug)
    before = request.GET.get("before", "")
    if not before.isascii() or not before.isdigit():
        return JsonResponse(
            wire.error(wire.INVALID_EVENT, "'before' must be a message id"), status=400
        )
    page = selectors.message_page(room, before=int(before), limit=settings.ROOM_PAGE_MESSAGES)
    html = render_to_string(
        "rooms/_messages.html", {"messages_page": page.messages}, request=request
    )
    return JsonResponse({"html": html, "has_more": page.has_more, "oldest_id": page.oldest_id})


@login_required
@require_http_methods(["GET", "POST"])
def join_by_invite(request: HttpRequest, code: str) -> HttpResponse:
    """GET: which room the link opens, and a Join button. POST: join it."""
    room = selectors.room_by_invite(code)
    if room is None:
        raise Http404("This invite link is unknown or was revoked.")
    if request.method == "POST":
        services.join_by_invite(user=request.user, code=code)
        return redirect("rooms:room", slug=room.slug)
    return render(
        request,
        "rooms/invite.html",
        {"room": room, "already_member": selectors.membership(room, request.user) is not None},
    )


@login_required
@require_GET
def members(request: HttpRequest, slug: str) -> HttpResponse:
    """The owner's page: who is in the room, and the invite link."""
    room = _owned_room(request, slug)
    invite_path = reverse("rooms:join", kwargs={"code": room.invite_code})
    return render(
        request,
        "rooms/members.html",
        {
            "room": room,
            "members": selectors.members(room),
            "invite_url": request.build_absolute_uri(invite_path),
        },
    )


@login_required
@require_POST
def remove_member(request: HttpRequest, slug: str, user_id: int) -> HttpResponse:
    room = get_object_or_404(Room, slug=slug)
    membership = selectors.membership_of(room, user_id)
    if services.remove_member(room=room, by=request.user, user_id=user_id):
        flash.success(request, f"{membership.user.get_username()} was removed from the room.")
    return redirect("rooms:members", slug=room.slug)


@login_required
@require_POST
def revoke_invite(request: HttpRequest, slug: str) -> HttpResponse:
    room = get_object_or_404(Room, slug=slug)
    services.revoke_invite(room=room, by=request.user)
    flash.success(request, "The old invite link no longer works; share the new one.")
    return redirect("rooms:members", slug=room.slug)
