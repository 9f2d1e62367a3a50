"""Account forms: logins that say why a throttled login is refused, sign-up, email."""

from __future__ import annotations

import math

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import AuthenticationForm, UserCreationForm
from django.core.exceptions import ValidationError

from accounts.backends import RETRY_AFTER_ATTR

LOCKED = "locked"


def _later(wait_s: int) -> str:
    if wait_s < 60:
        return f"{wait_s} second{'s' if wait_s != 1 else ''}"
    minutes = math.ceil(wait_s / 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def lockout_message(wait_s: int) -> str:
    return (
        "Too many failed logins. For your security, logging in is paused: "
        f"try again in {_later(wait_s)}."
    )


def reset_throttled_message(wait_s: int) -> str:
    return f"Too many password reset requests. No email was sent: try again in {_later(wait_s)}."


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


EMAIL_HELP = "Optional. Where a password reset link is sent if you forget your password."


class SignupForm(UserCreationForm):
    email = forms.EmailField(required=False, help_text=EMAIL_HELP)

    class Meta(UserCreationForm.Meta):
        model = get_user_model()
        fields = ("username", "email")


class EmailForm(forms.ModelForm):
    """The account page's email address (where reset links go)."""

    email = forms.EmailField(required=False, label="Email address", help_text=EMAIL_HELP)

    class Meta:
        model = get_user_model()
        fields = ("email",)
