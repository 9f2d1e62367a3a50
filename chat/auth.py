"""Personal API tokens: `Authorization: Bearer <token>` for HTTP and WebSocket.

Browsers use the session cookie (and so CSRF and Origin checks); API clients
send a bearer token, which no browser attaches by itself, so those requests
skip the cookie-oriented checks.
"""

from __future__ import annotations

from importlib import import_module

from channels.auth import get_user
from channels.db import database_sync_to_async
from channels.security.websocket import AllowedHostsOriginValidator
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.cookie import parse_cookie
from django.utils import timezone

from chat.models import ApiToken, hash_token


def bearer_from_headers(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name.lower() == b"authorization":
            return parse_bearer(value.decode("latin1"))
    return None


def parse_bearer(value: str | None) -> str | None:
    if value and value[:7].lower() == "bearer ":
        token = value[7:].strip()
        return token or None
    return None


def user_for_token(raw: str):
    """The token's active user, or None; records when the token was last used."""
    token = ApiToken.objects.select_related("user").filter(key_hash=hash_token(raw)).first()
    if token is None or not token.user.is_active:
        return None
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
    return token.user


def _resolved(user):
    async def auser():
        return user

    return auser


def create_api_token(*, user, name: str) -> tuple[ApiToken, str]:
    """Create a token; the raw key is returned once and never stored."""
    raw = ApiToken.generate_key()
    token = ApiToken.objects.create(
        user=user, name=name[:100] or "token", key_hash=hash_token(raw), key_prefix=raw[:10]
    )
    return token, raw


class BearerTokenMiddleware:
    """HTTP: a bearer token authenticates the request and exempts it from CSRF."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        raw = parse_bearer(request.headers.get("Authorization"))
        if raw is not None:
            user = user_for_token(raw)
            if user is None:
                return JsonResponse(
                    {"type": "error", "code": "unauthorized", "message": "Invalid API token"},
                    status=401,
                )
            request.user = user
            request.auser = _resolved(user)
            request._dont_enforce_csrf_checks = True
        return self.get_response(request)


class WebSocketAuthMiddleware:
    """Resolve scope['user'] once at connect: a bearer token, else the session cookie.

    Channels' AuthMiddlewareStack wraps every `send` to save a session the
    socket never changes, which cost about a tenth of the CPU of streaming a
    token under load; sockets here only read the session.
    """

    def __init__(self, inner) -> None:
        self.inner = inner

    async def __call__(self, scope, receive, send):
        headers = scope.get("headers", [])
        raw = bearer_from_headers(headers)
        if raw is not None:
            # An invalid token never falls back to the session: it is anonymous.
            user = await database_sync_to_async(user_for_token)(raw) or AnonymousUser()
            scope = dict(scope, user=user, auth_method="token")
        else:
            session = _session_from_headers(headers)
            user = await get_user({"session": session})
            scope = dict(scope, user=user, session=session, auth_method="session")
        return await self.inner(scope, receive, send)


def _session_from_headers(headers: list[tuple[bytes, bytes]]):
    cookies = {}
    for name, value in headers:
        if name.lower() == b"cookie":
            cookies = parse_cookie(value.decode("latin1"))
            break
    store = import_module(settings.SESSION_ENGINE).SessionStore
    return store(cookies.get(settings.SESSION_COOKIE_NAME))


class BrowserOriginValidator:
    """Check Origin for cookie-authenticated sockets; token clients send no Origin."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.checked = AllowedHostsOriginValidator(inner)

    async def __call__(self, scope, receive, send):
        if bearer_from_headers(scope.get("headers", [])) is not None:
            return await self.inner(scope, receive, send)
        return await self.checked(scope, receive, send)
