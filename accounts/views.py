"""Account pages: log in, sign up, the account page, passwords, personal API tokens."""

from __future__ import annotations

from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib import messages as flash
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import PasswordResetForm
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.views.decorators.http import require_http_methods

from accounts import throttle
from accounts.backends import RETRY_AFTER_ATTR
from accounts.forms import (
    LOCKED,
    EmailForm,
    LoginForm,
    SignupForm,
    reset_throttled_message,
)
from accounts.services import create_api_token, revoke_api_token

# The new key travels from the POST to the next GET in the session, once.
NEW_KEY_SESSION_KEY = "accounts.new_api_key"


class LoginView(auth_views.LoginView):
    """Django's login; a throttled attempt is a 429 with Retry-After and says why."""

    form_class = LoginForm

    def form_invalid(self, form: LoginForm) -> HttpResponse:
        response = super().form_invalid(form)
        wait = getattr(self.request, RETRY_AFTER_ATTR, 0)
        if wait:
            response.status_code = 429
            response["Retry-After"] = str(wait)
        return response


class PasswordResetView(auth_views.PasswordResetView):
    """Django's reset request, throttled per client address and per email address.

    A throttled request sends nothing and is a 429 with Retry-After that says
    why; the answer never tells whether an account has that email.
    """

    email_template_name = "registration/password_reset_email.txt"
    subject_template_name = "registration/password_reset_subject.txt"

    def form_valid(self, form: PasswordResetForm) -> HttpResponse:
        wait = async_to_sync(throttle.password_reset_wait_s)(
            email=form.cleaned_data["email"], address=throttle.client_address(self.request)
        )
        if wait:
            form.add_error(None, ValidationError(reset_throttled_message(wait), code=LOCKED))
            response = self.form_invalid(form)
            response.status_code = 429
            response["Retry-After"] = str(wait)
            return response
        return super().form_valid(form)


class PasswordChangeView(auth_views.PasswordChangeView):
    """Django's; this session stays logged in, the user's other sessions end
    (and their sockets close: accounts/signals.py). Back to the account page."""

    success_url = reverse_lazy("accounts:account")

    def form_valid(self, form):
        response = super().form_valid(form)
        flash.success(self.request, "Your password was changed. Other sessions were logged out.")
        return response


@login_required
@require_http_methods(["GET", "POST"])
def account(request: HttpRequest) -> HttpResponse:
    """Who you are, your email (for reset links), and where to change your password."""
    form = EmailForm(request.POST or None, instance=request.user)
    if request.method == "POST" and form.is_valid():
        form.save()
        flash.success(request, "Email address saved.")
        return redirect("accounts:account")
    return render(request, "accounts/account.html", {"form": form})


def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect(settings.LOGIN_REDIRECT_URL)
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user)
        return redirect(settings.LOGIN_REDIRECT_URL)
    return render(request, "registration/signup.html", {"form": form})


@login_required
@require_http_methods(["GET", "POST"])
def api_tokens(request: HttpRequest) -> HttpResponse:
    """List, create and revoke personal API tokens; a new key is shown once.

    POST, then redirect, then GET: reloading the page shows the list, never a
    second new token.
    """
    if request.method == "POST":
        if "revoke" in request.POST:
            if not request.POST["revoke"].isascii() or not request.POST["revoke"].isdigit():
                return HttpResponseBadRequest("Unknown token")
            if revoke_api_token(user=request.user, token_id=int(request.POST["revoke"])):
                flash.success(request, "Token revoked.")
            return redirect("accounts:tokens")
        _, raw = create_api_token(user=request.user, name=request.POST.get("name", "").strip())
        request.session[NEW_KEY_SESSION_KEY] = raw
        return redirect("accounts:tokens")
    return render(
        request,
        "accounts/tokens.html",
        {
            "tokens": request.user.api_tokens.all(),
            "new_key": request.session.pop(NEW_KEY_SESSION_KEY, None),
        },
    )
