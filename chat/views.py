"""Chat pages and the Server-Sent Events API."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from django.conf import settings
from django.contrib import messages as flash
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.views.decorators.http import require_GET, require_POST

from accounts.auth import request_user
from chat import events, search, selectors, services
from chat.models import Conversation
from realtime import api_errors, ratelimit, wire

# --- pages ---------------------------------------------------------------------------


@login_required
def chat_page(request: HttpRequest, conversation_id: int | None = None) -> HttpResponse:
    """The chat page; without an id it is a new, not yet saved conversation."""
    conversation, page = None, selectors.MessagePage(messages=[], has_more=False)
    if conversation_id is not None:
        conversation = get_object_or_404(Conversation, pk=conversation_id, owner=request.user)
        page = selectors.message_page(conversation, before=None, limit=settings.CHAT_PAGE_MESSAGES)
    sidebar = selectors.conversation_page(
        request.user, limit=settings.CHAT_SIDEBAR_PAGE_CONVERSATIONS
    )
    return render(
        request,
        "chat/chat.html",
        {
            "conversation": conversation,
            "conversations": sidebar.conversations,
            "conversations_next": sidebar.next_cursor,
            "page": page,
            "client_config": {
                "conversationId": conversation.pk if conversation else None,
                "wsPath": "/ws/chat/",
                "maxMessageChars": settings.CHAT_MAX_MESSAGE_CHARS,
                "demoMode": settings.DEMO_MODE,
            },
        },
    )


@login_required
@require_GET
def older_messages(request: HttpRequest, conversation_id: int) -> HttpResponse:
    """The page of messages before `?before=<message id>`, as HTML to put above the others."""
    conversation = get_object_or_404(Conversation, pk=conversation_id, owner=request.user)
    before = request.GET.get("before", "")
    if not before.isascii() or not before.isdigit():
        return JsonResponse(
            wire.error(wire.INVALID_EVENT, "'before' must be a message id"), status=400
        )
    page = selectors.message_page(
        conversation, before=int(before), limit=settings.CHAT_PAGE_MESSAGES
    )
    html = render_to_string(
        "chat/_messages.html", {"messages_page": page.messages}, request=request
    )
    return JsonResponse({"html": html, "has_more": page.has_more, "oldest_id": page.oldest_id})


def _cursor(request: HttpRequest) -> selectors.ConversationCursor | None:
    """The `after` parameter of a page of conversations; ValueError if malformed."""
    after = request.GET.get("after", "")
    return selectors.ConversationCursor.parse(after) if after else None


def _bad_cursor() -> JsonResponse:
    return JsonResponse(
        wire.error(wire.INVALID_EVENT, "'after' must be a cursor from a previous page"),
        status=400,
    )


@login_required
@require_GET
def conversation_list(request: HttpRequest) -> HttpResponse:
    """The sidebar's next page after `?after=<cursor>`, as HTML list items to append."""
    try:
        after = _cursor(request)
    except ValueError:
        return _bad_cursor()
    page = selectors.conversation_page(
        request.user, after=after, limit=settings.CHAT_SIDEBAR_PAGE_CONVERSATIONS
    )
    html = render_to_string(
        "chat/_conversation_items.html", {"conversations": page.conversations}, request=request
    )
    next_cursor = str(page.next_cursor) if page.next_cursor else None
    return JsonResponse({"html": html, "next": next_cursor})


@login_required
@require_GET
def search_conversations(request: HttpRequest) -> HttpResponse:
    """Conversations matching `?q=`, newest first, as HTML list items with snippets;
    `?after=<cursor>` reads the next page."""
    try:
        after = _cursor(request)
    except ValueError:
        return _bad_cursor()
    query = request.GET.get("q", "")[: settings.CHAT_SEARCH_MAX_QUERY_CHARS]
    page = search.search_conversations(
        request.user, query, limit=settings.CHAT_SEARCH_PAGE_RESULTS, cursor=after
    )
    html = render_to_string("chat/_search_results.html", {"hits": page.hits}, request=request)
    next_cursor = str(page.next_cursor) if page.next_cursor else None
    return JsonResponse(
        {"html": html, "next": next_cursor, "count": len(page.hits), "query": query}
    )


@login_required
@require_POST
def delete_conversation(request: HttpRequest, conversation_id: int) -> HttpResponse:
    conversation = get_object_or_404(Conversation, pk=conversation_id, owner=request.user)
    conversation.delete()
    flash.success(request, "Conversation deleted.")
    return redirect("chat:index")


@login_required
@require_POST
def rename_conversation(request: HttpRequest, conversation_id: int) -> HttpResponse:
    conversation = get_object_or_404(Conversation, pk=conversation_id, owner=request.user)
    conversation.title = request.POST.get("title", "").strip()[:200]
    conversation.save(update_fields=["title", "updated_at"])
    return redirect("chat:conversation", conversation_id=conversation.pk)


# --- Server-Sent Events -----------------------------------------------------------------
def _error_response(exc: wire.ProtocolError) -> JsonResponse:
    response = api_errors.protocol_error_response(exc)
    if response.status_code == 429:
        # The per-user message limit counts in one-minute windows (chat.services).
        response["Retry-After"] = str(ratelimit.window_retry_after_s(60))
    return response


def _unauthorized() -> JsonResponse:
    return api_errors.error_response(wire.UNAUTHORIZED, "Log in or send an API token")


def _sse_response(stream: AsyncIterator[bytes]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(stream, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


async def _sse_reply(message_id: int, *, after: int, head: list[dict]) -> AsyncIterator[bytes]:
    """SSE frames for a reply; a client that goes away counts as a reader leaving."""
    for event in head:
        yield events.sse(event)
    finished = False
    try:
        async for seq, event in services.follow_reply(message_id, after=after):
            yield events.sse(event, event_id=seq if event["type"] == "token" else None)
        finished = True
    finally:
        if not finished:
            await services.detach_reader(message_id)


def _parse_body(request: HttpRequest) -> events.ClientEvent:
    if request.content_type == "application/json":
        raw = request.body
    else:
        raw = json.dumps(
            {
                "type": "message",
                "content": request.POST.get("content", ""),
                "conversation_id": request.POST.get("conversation_id") or None,
            }
        )
    return events.parse_client_event(
        raw,
        allowed_types=frozenset({"message"}),
        max_frame_bytes=settings.WS_MAX_FRAME_BYTES,
        max_content_chars=settings.CHAT_MAX_MESSAGE_CHARS,
    )


@require_POST
async def stream_chat(request: HttpRequest) -> HttpResponse:
    """POST /api/chat/stream: send a message, receive the reply as SSE."""
    user = await request_user(request)
    if not user.is_authenticated:
        return _unauthorized()
    try:
        event = _parse_body(request)
        handle = await services.start_reply(
            user=user, content=event.content, conversation_id=event.conversation_id
        )
    except wire.ProtocolError as exc:
        return _error_response(exc)
    head = [
        events.ack(
            message_id=handle.message_id,
            conversation_id=handle.conversation_id,
            user_message_id=handle.user_message_id,
        ),
        events.progress("thinking", message_id=handle.message_id),
    ]
    return _sse_response(_sse_reply(handle.message_id, after=-1, head=head))


@require_GET
async def resume_stream(request: HttpRequest, message_id: int) -> HttpResponse:
    """GET /api/chat/stream/<id>/: replay a reply after `after` (or Last-Event-ID)."""
    user = await request_user(request)
    if not user.is_authenticated:
        return _unauthorized()
    after_raw = request.GET.get("after", request.headers.get("Last-Event-ID", "-1"))
    try:
        after = wire.int_field({"after": after_raw}, "after", -1, minimum=-1)
        await services.get_own_reply(user=user, message_id=message_id)
    except wire.ProtocolError as exc:
        return _error_response(exc)
    await services.attach_reader(message_id)
    return _sse_response(_sse_reply(message_id, after=after, head=[]))
