"""Template filters of the room pages."""

from django import template

register = template.Library()

# static/js/room.js picks the same colour: `avatar-hue-${userId % AVATAR_HUES}`.
AVATAR_HUES = 8


@register.filter
def avatar_hue(user_id: int | None) -> str:
    """The colour class of a person's avatar, the same on every page and for everyone."""
    return f"avatar-hue-{(user_id or 0) % AVATAR_HUES}"


@register.filter
def initial(name: str) -> str:
    return (name or "?")[:1].upper()
