"""ASGI entry point: HTTP to Django, WebSockets through origin and auth checks."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "realtime_site.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402 - needs Django

from chat.auth import BrowserOriginValidator, WebSocketAuthMiddleware  # noqa: E402
from realtime_site.lifecycle import install_shutdown_hook  # noqa: E402
from realtime_site.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": BrowserOriginValidator(
            WebSocketAuthMiddleware(URLRouter(websocket_urlpatterns))
        ),
    }
)

install_shutdown_hook()
