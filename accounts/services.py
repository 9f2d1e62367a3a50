"""Writes for accounts: API tokens."""

from __future__ import annotations

from accounts.models import ApiToken, hash_token


def create_api_token(*, user, name: str) -> tuple[ApiToken, str]:
    """Create a token; the raw key is returned once and never stored."""
    raw = ApiToken.generate_key()
    token = ApiToken.objects.create(
        user=user, name=name[:100] or "token", key_hash=hash_token(raw), key_prefix=raw[:10]
    )
    return token, raw


def revoke_api_token(*, user, token_id: int) -> bool:
    """Delete one of the user's tokens; False if they have no such token."""
    deleted, _ = ApiToken.objects.filter(user=user, pk=token_id).delete()
    return bool(deleted)
