"""Every response under /api/ is JSON, errors included.

API clients parse JSON, but Django answers its own refusals (an unknown URL,
a wrong method, a failed CSRF check, a body over DATA_UPLOAD_MAX_MEMORY_SIZE,
an unhandled exception) with HTML pages. `JsonApiErrorsMiddleware` gives
those the protocol's `error` object (`realtime.wire.error`) with the same
status, and views build their own refusals with `error_response`. Pages
outside /api/ keep Django's HTML.
"""

from __future__ import annotations

import logging

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponseBase, JsonResponse
from django.views import csrf

from realtime import wire
from realtime.middleware import SyncAndAsyncMiddleware

logger = logging.getLogger(__name__)

API_PATH_PREFIX = "/api/"

# The HTTP status of each code an API view refuses a request with.
STATUS_FOR_CODE = {
    wire.INVALID_JSON: 400,
    wire.INVALID_EVENT: 400,
    wire.UNKNOWN_TYPE: 400,
    wire.EMPTY_CONTENT: 400,
    wire.INVALID_REQUEST: 400,
    wire.UNAUTHORIZED: 401,
    wire.FORBIDDEN: 403,
    wire.CSRF_FAILED: 403,
    wire.NOT_FOUND: 404,
    wire.METHOD_NOT_ALLOWED: 405,
    wire.BUSY: 409,
    wire.TOO_LARGE: 413,
    wire.RATE_LIMITED: 429,
    wire.INTERNAL_ERROR: 500,
}

# What an error response Django made means, by status.
_CODE_FOR_STATUS = {
    400: (wire.INVALID_REQUEST, "The request is malformed."),
    401: (wire.UNAUTHORIZED, "Log in or send an API token."),
    403: (wire.FORBIDDEN, "You may not do that."),
    404: (wire.NOT_FOUND, "Not found."),
    413: (wire.TOO_LARGE, "The request body is too large."),
    429: (wire.RATE_LIMITED, "Too many requests; slow down."),
}
# Headers that describe the replaced body, not the response.
_BODY_HEADERS = frozenset(
    {"content-type", "content-length", "content-encoding", "content-language"}
)


def is_api_request(request: HttpRequest) -> bool:
    return request.path.startswith(API_PATH_PREFIX)


def error_response(
    code: str, message: str, *, status: int | None = None, retryable: bool | None = None
) -> JsonResponse:
    """An `error` object as a JSON response; the status follows the code unless given."""
    response = JsonResponse(
        wire.error(code, message, retryable=retryable),
        status=status if status is not None else STATUS_FOR_CODE.get(code, 400),
    )
    if response.status_code == 401:
        response["WWW-Authenticate"] = "Bearer"  # how to authenticate (RFC 9110)
    return response


def protocol_error_response(exc: wire.ProtocolError) -> JsonResponse:
    return error_response(exc.code, exc.message, retryable=exc.retryable)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponseBase:
    """CSRF_FAILURE_VIEW: a JSON 403 saying why under /api/, Django's page elsewhere."""
    if is_api_request(request):
        return error_response(wire.CSRF_FAILED, f"CSRF check failed: {reason}")
    return csrf.csrf_failure(request, reason=reason)


class JsonApiErrorsMiddleware(SyncAndAsyncMiddleware):
    """Turns every non-JSON error response under /api/ into a JSON `error`.

    Near the top of MIDDLEWARE, so it sees what every other middleware and
    Django's own exception handling answered. Django has already logged an
    unhandled exception with its traceback when its 500 gets here; the client
    gets `internal_error` and no traceback.
    """

    def call(self, request: HttpRequest) -> HttpResponseBase:
        return self._as_json(request, self.get_response(request))

    async def acall(self, request: HttpRequest) -> HttpResponseBase:
        return self._as_json(request, await self.get_response(request))

    def process_view(self, request: HttpRequest, view_func, view_args, view_kwargs):
        """Read an API body before anything else does.

        A body over DATA_UPLOAD_MAX_MEMORY_SIZE is then a 413 and one warning;
        met later (in the CSRF check or the view) Django answers 400 and logs
        it as a security error with a traceback.
        """
        if not is_api_request(request):
            return None
        try:
            request.body  # noqa: B018 - read for its check; Django keeps it
        except RequestDataTooBig:
            logger.warning("request body too large path=%s", request.path)
            return error_response(wire.TOO_LARGE, "The request body is too large.")
        return None

    def _as_json(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        if (
            response.status_code < 400
            or not is_api_request(request)
            or response.get("Content-Type", "").startswith("application/json")
        ):
            return response
        replacement = error_response(
            *self._code_and_message(request, response), status=response.status_code
        )
        # Everything but the body's own headers still holds (Allow, Retry-After,
        # the security headers the layers inside added) and so do cookies.
        for header, value in response.items():
            if header.lower() not in _BODY_HEADERS:
                replacement[header] = value
        replacement.cookies = response.cookies
        # Django logs each error response once; the replacement was logged as the original.
        if getattr(response, "_has_been_logged", False):
            replacement._has_been_logged = True
        return replacement

    @staticmethod
    def _code_and_message(request: HttpRequest, response: HttpResponseBase) -> tuple[str, str]:
        status = response.status_code
        if status == 405:
            allowed = response.get("Allow", "")
            return wire.METHOD_NOT_ALLOWED, f"{request.method} is not allowed here; use {allowed}."
        if status >= 500:
            return wire.INTERNAL_ERROR, "The server failed to answer; try again."
        return _CODE_FOR_STATUS.get(status, (wire.INVALID_REQUEST, "The request was refused."))
