"""Reads for room pages and sockets."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Q

from rooms.models import Membership, Room, RoomMessage


def rooms_for(user, *, limit: int = 100) -> tuple[list[Room], list[Room]]:
    """(the user's rooms, public rooms they are not in), most recently active first.

    Each room carries `member_count`. Membership is matched by a subquery, not
    a join: a join on the memberships would make the count count only the user's.
    """
    joined = Membership.objects.filter(user=user).values("room_id")
    rooms = Room.objects.select_related("owner").annotate(member_count=Count("memberships"))
    mine = rooms.filter(pk__in=joined).order_by("-updated_at")[:limit]
    public = rooms.filter(is_private=False).exclude(pk__in=joined).order_by("-updated_at")[:limit]
    return list(mine), list(public)


def room_by_invite(code: str) -> Room | None:
    """The room an invite link opens; None for an unknown or revoked one."""
    return Room.objects.filter(invite_code=code).first() if code else None


def membership(room: Room, user) -> Membership | None:
    return Membership.objects.filter(room=room, user=user).first()


def membership_of(room: Room, user_id: int) -> Membership | None:
    return Membership.objects.filter(room=room, user_id=user_id).select_related("user").first()


def can_enter(room: Room, user) -> bool:
    """Public rooms are open to every signed-in person; private ones to their members."""
    return not room.is_private or Membership.objects.filter(room=room, user=user).exists()


def members(room: Room) -> list[Membership]:
    return list(room.memberships.select_related("user").order_by("joined_at"))


@dataclass(frozen=True)
class MessagePage:
    """Messages in display order (oldest first); `has_more` if older ones exist."""

    messages: list[RoomMessage]
    has_more: bool

    @property
    def oldest_id(self) -> int | None:
        return self.messages[0].pk if self.messages else None


def message_page(room: Room, *, before: int | None, limit: int) -> MessagePage:
    """The `limit` newest messages older than message `before` (or the newest ones)."""
    query = room.messages.select_related("author").order_by("-created_at", "-id")
    if before is not None:
        anchor = room.messages.filter(pk=before).values("created_at").first()
        if anchor is None:
            return MessagePage(messages=[], has_more=False)
        at = anchor["created_at"]
        query = query.filter(Q(created_at__lt=at) | Q(created_at=at, pk__lt=before))
    newest_first = list(query[: limit + 1])
    return MessagePage(messages=newest_first[:limit][::-1], has_more=len(newest_first) > limit)
