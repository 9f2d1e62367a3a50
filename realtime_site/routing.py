"""WebSocket routes of every app, behind origin and auth checks."""

from channels.routing import URLRouter
from django.urls import re_path

from accounts.auth import BrowserOriginValidator, WebSocketAuthMiddleware
from chat.consumers import ChatConsumer

websocket_urlpatterns = [
    re_path(r"^ws/chat/?$", ChatConsumer.as_asgi()),
]

websocket_application = BrowserOriginValidator(
    WebSocketAuthMiddleware(URLRouter(websocket_urlpatterns))
)
