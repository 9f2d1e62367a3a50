"""The conversation menu's pages: model and system prompt, export, share links; the shared page."""

from __future__ import annotations

import json

from django.conf import settings
from django.contrib import messages as flash
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import content_disposition_header
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from accounts.auth import request_user
from chat import conversation_settings, export, selectors, sharing
from chat.models import Conversation
from realtime import api_errors, wire
from realtime.model_catalog import catalog

# --- model and system prompt --------------------------------------------------------------


@require_GET
async def models_list(request: HttpRequest) -> HttpResponse:
    """GET /chat/models/: what the model picker offers."""
    if not (await request_user(request)).is_authenticated:
        return api_errors.error_response(wire.UNAUTHORIZED, "Log in first")
    return JsonResponse({"models": await catalog.offered(), "default": settings.OPENAI_MODEL})


@require_POST
async def update_settings(request: HttpRequest, conversation_id: int | None = None) -> HttpResponse:
    """POST the fields `model` and/or `system_prompt`; without an id, a new conversation.

    Answers JSON to `Accept: application/json` (the page's script), else
    redirects to the conversation (a plain form).
    """
    wants_json = "application/json" in request.headers.get("Accept", "")
    user = await request_user(request)
    if not user.is_authenticated:
        return api_errors.error_response(wire.UNAUTHORIZED, "Log in first")
    try:
        conversation = await conversation_settings.update_settings(
            user=user,
            conversation_id=conversation_id,
            model=request.POST.get("model"),
            system_prompt=request.POST.get("system_prompt"),
        )
    except wire.ProtocolError as exc:
        if exc.code == wire.NOT_FOUND:
            raise Http404(exc.message) from None
        if wants_json:
            return api_errors.protocol_error_response(exc)
        flash.error(request, exc.message)
        return redirect(_page(conversation_id))
    if wants_json:
        return JsonResponse(
            {
                "conversation_id": conversation.pk,
                "url": _page(conversation.pk),
                "model": conversation.model,
                "system_prompt": conversation.system_prompt,
            }
        )
    flash.success(request, "Conversation settings saved.")
    return redirect(_page(conversation.pk))


def _page(conversation_id: int | None) -> str:
    if conversation_id is None:
        return reverse("chat:index")
    return reverse("chat:conversation", args=[conversation_id])


# --- export ---------------------------------------------------------------------------------


@login_required
@require_GET
def export_markdown(request: HttpRequest, conversation_id: int) -> HttpResponse:
    conversation = get_object_or_404(Conversation, pk=conversation_id, owner=request.user)
    text = export.as_markdown(
        conversation, selectors.shown_messages(conversation), site_model=settings.OPENAI_MODEL
    )
    return _download(text, "text/markdown; charset=utf-8", export.filename(conversation, "md"))


@login_required
@require_GET
def export_json(request: HttpRequest, conversation_id: int) -> HttpResponse:
    conversation = get_object_or_404(Conversation, pk=conversation_id, owner=request.user)
    data = export.as_json(
        conversation, selectors.shown_messages(conversation), site_model=settings.OPENAI_MODEL
    )
    text = json.dumps(data, ensure_ascii=False, indent=2)
    return _download(text, "application/json", export.filename(conversation, "json"))


def _download(text: str, content_type: str, filename: str) -> HttpResponse:
    response = HttpResponse(text, content_type=content_type)
    response["Content-Disposition"] = content_disposition_header(True, filename)
    response["Cache-Control"] = "private, no-store"
    return response


# --- share links ----------------------------------------------------------------------------


@login_required
@require_POST
def share(request: HttpRequest, conversation_id: int) -> HttpResponse:
    conversation = get_object_or_404(Conversation, pk=conversation_id, owner=request.user)
    token = sharing.share(conversation)
    link = request.build_absolute_uri(reverse("shared", args=[token]))
    flash.success(request, f"Anyone with the link can read this conversation: {link}")
    return redirect(_page(conversation.pk) + "#conversation-menu")


@login_required
@require_POST
def revoke_share(request: HttpRequest, conversation_id: int) -> HttpResponse:
    conversation = get_object_or_404(Conversation, pk=conversation_id, owner=request.user)
    sharing.revoke(conversation)
    flash.success(request, "The share link no longer works.")
    return redirect(_page(conversation.pk) + "#conversation-menu")


@never_cache
@require_GET
def shared_page(request: HttpRequest, token: str) -> HttpResponse:
    """A shared conversation, read-only, for anyone with the link (signed in or not)."""
    conversation = sharing.shared_conversation(token)
    if conversation is None:
        raise Http404("No such shared conversation")
    response = render(
        request,
        "chat/shared.html",
        {
            "conversation": conversation,
            "shared_messages": sharing.shared_messages(conversation),
            "shared": True,
        },
    )
    response["X-Robots-Tag"] = "noindex, nofollow"
    return response
