"""Login throttling: failed logins lock an account name and a client address.

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
