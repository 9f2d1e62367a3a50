"""Open sockets end when the credentials they were opened with do.

A socket is authenticated once, at connect. So that logging out, changing a
password, deactivating or deleting a user, or revoking a token also ends the
sockets already open (on every process), each socket joins channel-layer
groups named after its credentials, and whoever ends a credential sends one
`credentials.ended` message to its group; the base consumer closes with 4401.

Groups: one per user (every socket of that user), one per API token (token
sockets), one per session (cookie sockets). Session keys are bearer secrets,
so their group names carry a hash of the key, never the key itself.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)

# The channel-layer message type; RealtimeConsumer.credentials_ended handles it.
ENDED = "credentials.ended"
# Values of scope["auth_method"] (set by the socket auth middleware).
SESSION = "session"
TOKEN = "token"


def user_group(user_id: int) -> str:
    return f"auth.user.{user_id}"


def token_group(token_id: int) -> str:
    return f"auth.token.{token_id}"


def session_group(session_key: str) -> str:
    # Group names allow ASCII letters, digits, "-", "_" and "." up to 99 characters.
    return f"auth.session.{hashlib.sha256(session_key.encode()).hexdigest()}"


def groups_for(scope: dict) -> list[str]:
    """The credential groups an authenticated socket joins."""
    user = scope.get("user")
    groups = [user_group(user.pk)] if user is not None and user.pk is not None else []
    if scope.get("auth_method") == TOKEN and scope.get("api_token_id") is not None:
        groups.append(token_group(scope["api_token_id"]))
    session = scope.get("session")
    if scope.get("auth_method") == SESSION and session is not None and session.session_key:
        groups.append(session_group(session.session_key))
    return groups


def ended_message(*, auth_method: str | None = None) -> dict[str, Any]:
    """The message to a credential group; with `auth_method`, only such sockets close."""
    message: dict[str, Any] = {"type": ENDED}
    if auth_method is not None:
        message["auth_method"] = auth_method
    return message


def closes(message: dict, scope: dict) -> bool:
    """Whether a `credentials.ended` message ends a socket with this scope."""
    wanted = message.get("auth_method")
    return wanted is None or wanted == scope.get("auth_method")


async def end(group: str, *, auth_method: str | None = None) -> None:
    """Close the sockets of `group` on every process (those of `auth_method` only, if given)."""
    layer = get_channel_layer()
    if layer is not None:
        await layer.group_send(group, ended_message(auth_method=auth_method))


def end_from_sync(group: str, *, auth_method: str | None = None) -> None:
    """`end` for sync code (views, signal receivers, the shell); never raises.

    A credential ends in the database whether or not the layer answers; a
    failure here is logged, and those sockets end at their next reconnect.
    """
    try:
        async_to_sync(end)(group, auth_method=auth_method)
    except Exception:
        logger.exception("could not close the sockets of %s", group)
