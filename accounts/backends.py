"""The authentication backend: Django's, behind the login throttle."""

from __future__ import annotations

from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import PermissionDenied

from accounts import throttle

# Set on the request when a login is refused by the throttle: seconds to wait.
RETRY_AFTER_ATTR = "login_retry_after_s"


class ThrottledModelBackend(ModelBackend):
    """Refuses every login to a locked username or from a locked address.

    In the backend rather than a view so the admin's login and any other
    caller of `authenticate()` are throttled too. A locked attempt stops
    before the password hasher runs: guessing costs the server nothing.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is not None:
            if username is None:
                username = kwargs.get(get_user_model().USERNAME_FIELD)
            wait = async_to_sync(throttle.retry_after_s)(
                username=username, address=throttle.client_address(request)
            )
            if wait:
                setattr(request, RETRY_AFTER_ATTR, wait)
                raise PermissionDenied  # ends authenticate(): no other backend is asked
        return super().authenticate(request, username=username, password=password, **kwargs)
