"""WebSocket routes of every app, behind origin and auth checks."""

from channels.routing import URLRouter
from django.urls import re_path

from accounts.auth import BrowserOriginValidator, WebSocketAuthMiddleware
from chat.consumers import ChatConsumer
from rooms.consumers import RoomConsumer
from voice.consumers import VoiceConsumer

websocket_urlpatterns = [
    re_path(r"^ws/chat/?$", ChatConsumer.as_asgi()),
    re_path(r"^ws/room/(?P<slug>[-a-zA-Z0-9_]+)/?$", RoomConsumer.as_asgi()),
    re_path(r"^ws/voice/?$", VoiceConsumer.as_asgi()),
]

websocket_application = BrowserOriginValidator(
    WebSocketAuthMiddleware(URLRouter(websocket_urlpatterns))
)
