"""Login forms that say why a throttled login is refused."""

from __future__ import annotations

import math

from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError

from accounts.backends import RETRY_AFTER_ATTR

LOCKED = "locked"


def lockout_message(wait_s: int) -> str:
    if wait_s < 60:
        later = f"{wait_s} second{'s' if wait_s != 1 else ''}"
    else:
        minutes = math.ceil(wait_s / 60)
        later = f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"Too many failed logins. For your security, logging in is paused: try again in {later}."


class LockoutMessageMixin:
    def get_invalid_login_error(self) -> ValidationError:
        wait = getattr(self.request, RETRY_AFTER_ATTR, 0)
        if wait:
            return ValidationError(lockout_message(wait), code=LOCKED)
        return super().get_invalid_login_error()


class LoginForm(LockoutMessageMixin, AuthenticationForm):
    pass


class AdminLoginForm(LockoutMessageMixin, AdminAuthenticationForm):
    pass
