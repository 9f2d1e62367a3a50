"""Login and password-reset throttling.

Failed logins lock an account name and a client address.

After LOGIN_MAX_FAILURES_PER_ACCOUNT failed logins for one username (from any
address), or LOGIN_MAX_FAILURES_PER_ADDRESS from one address (for any
usernames), further logins there are refused, even with the right password,
until LOGIN_LOCKOUT_SECONDS pass without a new failure. Refused attempts are
not counted, so the lock lifts on time. The counts live in the core's rate
limiter: in process, or in Redis (shared by every process) when REDIS_URL is set.

A successful login clears its username's count, never the address's: one
valid account must not let an address keep guessing others.
"""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.http import HttpRequest

from realtime import ratelimit

ACCOUNT = "login-account"
ADDRESS = "login-address"


def _account(username: str) -> str:
    # Case-folded so "Alice" and "alice" share a count; hashed to keep names out of Redis.
    return hashlib.sha256(username.strip().casefold().encode()).hexdigest()[:32]


def client_address(request: HttpRequest | None) -> str | None:
    """The peer's address (the client's own when daphne runs with --proxy-headers)."""
    if request is None:
        return None
    return request.META.get("REMOTE_ADDR") or None


async def retry_after_s(*, username: str | None, address: str | None) -> int:
    """Seconds until a login for `username` from `address` is allowed again; 0 if now."""
    waits = [0]
    if username:
        waits.append(
            await ratelimit.lockout_s(
                ACCOUNT, _account(username), limit=settings.LOGIN_MAX_FAILURES_PER_ACCOUNT
            )
        )
    if address:
        waits.append(
            await ratelimit.lockout_s(
                ADDRESS, address, limit=settings.LOGIN_MAX_FAILURES_PER_ADDRESS
            )
        )
    return max(waits)


async def record_failure(*, username: str | None, address: str | None) -> None:
    window_s = settings.LOGIN_LOCKOUT_SECONDS
    if username:
        await ratelimit.record_failure(ACCOUNT, _account(username), window_s=window_s)
    if address:
        await ratelimit.record_failure(ADDRESS, address, window_s=window_s)


async def record_success(*, username: str) -> None:
    await ratelimit.clear_failures(ACCOUNT, _account(username))


# --- Password reset requests ------------------------------------------------------------
# Each request for a reset mail counts against its client address and the address
# it was sent for (whether or not an account has it, so the answer reveals nothing);
# past PASSWORD_RESET_MAX_PER_ADDRESS or PASSWORD_RESET_MAX_PER_EMAIL in a window of
# PASSWORD_RESET_WINDOW_SECONDS, no mail is sent until the window ends.
RESET_ADDRESS = "reset-address"
RESET_EMAIL = "reset-email"


async def password_reset_wait_s(*, email: str, address: str | None) -> int:
    """Count one reset request; seconds until another is allowed if over a limit, else 0."""
    window_s = settings.PASSWORD_RESET_WINDOW_SECONDS
    allowed = True
    if address:
        allowed = await ratelimit.allow(
            RESET_ADDRESS, address, limit=settings.PASSWORD_RESET_MAX_PER_ADDRESS, window_s=window_s
        )
    if allowed:
        # An address already refused does not use up the email's allowance.
        allowed = await ratelimit.allow(
            RESET_EMAIL, _account(email), limit=settings.PASSWORD_RESET_MAX_PER_EMAIL,
            window_s=window_s,
        )  # fmt: skip
    return 0 if allowed else ratelimit.window_retry_after_s(window_s)
