"""Receivers for account events (connected in AccountsConfig.ready).

Failed and successful logins feed the login throttle (accounts/throttle.py).

When a credential ends, the sockets opened with it close with 4401 on every
process (realtime/credentials.py):
- logout: that session's sockets;
- a password change: every session socket of the user (Django ends all their
  sessions; API tokens stay valid, so token sockets stay open);
- deactivation or deletion of the user: every socket of the user;
- a deleted (revoked) API token: that token's sockets.
Changes inside a transaction close sockets only once it commits, so a client
that reconnects at once meets the new state.
"""

from __future__ import annotations

from functools import partial

from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db import transaction
from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver

from accounts import throttle
from accounts.backends import RETRY_AFTER_ATTR
from accounts.models import ApiToken
from realtime import credentials

# Fields whose change ends credentials; compared around a user's save.
_CREDENTIAL_FIELDS = ("password", "is_active")


def _end_after_commit(group: str, *, auth_method: str | None = None) -> None:
    transaction.on_commit(
        partial(credentials.end_from_sync, group, auth_method=auth_method), robust=True
    )


@receiver(user_login_failed)
def count_a_failed_login(sender, credentials, request=None, **kwargs) -> None:
    if request is None or getattr(request, RETRY_AFTER_ATTR, 0):
        return  # not a login attempt over HTTP, or refused while locked: not counted
    async_to_sync(throttle.record_failure)(
        username=credentials.get("username"), address=throttle.client_address(request)
    )


@receiver(user_logged_in)
def clear_failed_logins(sender, request, user, **kwargs) -> None:
    async_to_sync(throttle.record_success)(username=user.get_username())


@receiver(user_logged_out)
def close_sockets_of_the_session(sender, request, user, **kwargs) -> None:
    session = getattr(request, "session", None)
    if session is not None and session.session_key:
        credentials.end_from_sync(credentials.session_group(session.session_key))


@receiver(pre_save, sender=settings.AUTH_USER_MODEL)
def remember_credentials(sender, instance, raw=False, update_fields=None, **kwargs) -> None:
    """Read the stored password and is_active before a save that may change them."""
    if raw or instance.pk is None:
        return
    if update_fields is not None and not set(_CREDENTIAL_FIELDS) & set(update_fields):
        return  # e.g. last_login at every login: no query
    instance._credentials_before = (
        sender._default_manager.filter(pk=instance.pk).values(*_CREDENTIAL_FIELDS).first()
    )


@receiver(post_save, sender=settings.AUTH_USER_MODEL)
def close_sockets_of_ended_credentials(sender, instance, created, raw=False, **kwargs) -> None:
    before = instance.__dict__.pop("_credentials_before", None)
    if created or raw or before is None:
        return
    group = credentials.user_group(instance.pk)
    if before["is_active"] and not instance.is_active:
        _end_after_commit(group)
    elif before["password"] != instance.password:
        _end_after_commit(group, auth_method=credentials.SESSION)


@receiver(post_delete, sender=settings.AUTH_USER_MODEL)
def close_sockets_of_a_deleted_user(sender, instance, **kwargs) -> None:
    _end_after_commit(credentials.user_group(instance.pk))


@receiver(post_delete, sender=ApiToken)
def close_sockets_of_a_revoked_token(sender, instance, **kwargs) -> None:
    _end_after_commit(credentials.token_group(instance.pk))
