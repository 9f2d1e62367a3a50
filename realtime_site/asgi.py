"""ASGI entry point: HTTP to Django, WebSockets to the routes in routing.py."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "realtime_site.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402 - needs Django

from realtime.lifecycle import install_shutdown_hook  # noqa: E402
from realtime_site.routing import websocket_application  # noqa: E402

application = ProtocolTypeRouter({"http": django_asgi_app, "websocket": websocket_application})

install_shutdown_hook()
