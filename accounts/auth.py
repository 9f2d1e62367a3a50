"""Who is calling: bearer tokens for the API and sockets, sessions for browsers.

Browsers use the session cookie (and so CSRF and Origin checks); API clients
send `Authorization: Bearer <token>`, which no browser attaches by itself, so
those requests skip the cookie-oriented checks. A token is not a session: it
authenticates only the API (`/api/`) and the sockets (`/ws/`), never admin or
account pages.
"""

from __future__ import annotations

from importlib import import_module
from types import SimpleNamespace
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.contrib.auth import get_user
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest, HttpResponse
from django.http.cookie import parse_cookie
from django.http.request import split_domain_port, validate_host
from django.utils import timezone

from accounts.models import ApiToken, hash_token
from realtime import api_errors, wire
from realtime.db import on_db_pool
from realtime.middleware import SyncAndAsyncMiddleware

# The only HTTP paths a bearer token opens.
TOKEN_PATH_PREFIXES = ("/api/",)


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


def token_for(raw: str) -> ApiToken | None:
    """The token with its active user, or None; records when the token was last used."""
    token = ApiToken.objects.select_related("user").filter(key_hash=hash_token(raw)).first()
    if token is None or not token.user.is_active:
        return None
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
    return token


def _resolved(user):
    async def auser():
        return user

    return auser


class BearerTokenMiddleware(SyncAndAsyncMiddleware):
    """HTTP: under /api/, a bearer token authenticates the request and exempts it from CSRF.

    Elsewhere the header is ignored: the page sees the session (or nobody).
    Under ASGI the token lookup runs on the database pool, so the request's
    own thread never holds a connection while its response streams.
    """

    def call(self, request: HttpRequest) -> HttpResponse:
        raw = _token_to_check(request)
        if raw is not None:
            refused = _authenticate(request, token_for(raw))
            if refused is not None:
                return refused
        return self.get_response(request)

    async def acall(self, request: HttpRequest) -> HttpResponse:
        raw = _token_to_check(request)
        if raw is not None:
            refused = _authenticate(request, await _token_for(raw))
            if refused is not None:
                return refused
        return await self.get_response(request)


def _token_to_check(request: HttpRequest) -> str | None:
    raw = parse_bearer(request.headers.get("Authorization"))
    return raw if raw is not None and request.path.startswith(TOKEN_PATH_PREFIXES) else None


def _authenticate(request: HttpRequest, token: ApiToken | None) -> HttpResponse | None:
    """Make the token's user the request's user; a refusal if the token is not valid."""
    if token is None:
        return api_errors.error_response(wire.UNAUTHORIZED, "Invalid API token")
    request.user = token.user
    request.auser = _resolved(token.user)
    request.api_token = token
    request._dont_enforce_csrf_checks = True
    return None


async def request_user(request: HttpRequest):
    """The request's user for async views, read on the database pool.

    `request.auser()` would load the session on the request's own thread and
    keep that thread's connection until the response ends.
    """
    if getattr(request, "api_token", None) is not None:
        return request.user
    return await _user_for_session(request.session)


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
            token = await _token_for(raw)
            user = token.user if token is not None else AnonymousUser()
            scope = dict(scope, user=user, auth_method="token", api_token_id=token and token.pk)
        else:
            session = _session_from_headers(headers)
            user = await _user_for_session(session)
            scope = dict(scope, user=user, session=session, auth_method="session")
        return await self.inner(scope, receive, send)


# Socket-side database work runs on the core's database threads.
_token_for = on_db_pool(token_for)


@on_db_pool
def _user_for_session(session):
    """The session's user (Django checks the session's auth hash), or AnonymousUser."""
    return get_user(SimpleNamespace(session=session))


def _session_from_headers(headers: list[tuple[bytes, bytes]]):
    cookies = {}
    for name, value in headers:
        if name.lower() == b"cookie":
            cookies = parse_cookie(value.decode("latin1"))
            break
    store = import_module(settings.SESSION_ENGINE).SessionStore
    return store(cookies.get(settings.SESSION_COOKIE_NAME))


class BrowserOriginValidator:
    """Cookie-authenticated sockets must come from one of the site's own origins.

    The whole origin counts (scheme, host and port): a page served from another
    port of the same host is another site, and the session cookie (same-site)
    would otherwise let it chat as the victim. The site's origins are the one
    the socket itself was opened on (its Host, with ALLOWED_HOSTS checked) and
    CSRF_TRUSTED_ORIGINS. Token clients send no cookie, so no Origin is needed.
    """

    def __init__(self, inner) -> None:
        self.inner = inner

    async def __call__(self, scope, receive, send):
        headers = scope.get("headers", [])
        if bearer_from_headers(headers) is not None or _origin_allowed(scope):
            return await self.inner(scope, receive, send)
        denier = WebsocketDenier()
        return await denier(scope, receive, send)


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin1")
    return None


def _scheme(scope) -> str:
    """http or https, as the browser sees the site (a TLS proxy may say so)."""
    if settings.SECURE_PROXY_SSL_HEADER:
        header, secure_value = settings.SECURE_PROXY_SSL_HEADER
        name = header.removeprefix("HTTP_").replace("_", "-").lower().encode()
        if _header(scope, name) == secure_value:
            return "https"
    return "https" if scope.get("scheme") in ("wss", "https") else "http"


def _origin_allowed(scope) -> bool:
    origin = _header(scope, b"origin")
    host = _header(scope, b"host")
    if not origin or not host:
        return False
    domain, _ = split_domain_port(host)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return False
    allowed = {_normalized(f"{_scheme(scope)}://{host}")}
    allowed.update(_normalized(o) for o in settings.CSRF_TRUSTED_ORIGINS)
    return _normalized(origin) in allowed - {""}


def _normalized(origin: str) -> str:
    """scheme://host[:port], lower case, default ports dropped."""
    parts = urlsplit(origin.strip().lower())
    try:
        port = parts.port
    except ValueError:
        return ""
    default = {"http": 80, "https": 443}.get(parts.scheme)
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if port is not None and port != default:
        netloc = f"{netloc}:{port}"
    return f"{parts.scheme}://{netloc}" if parts.scheme and netloc else ""
