"""HTTP routes of every app."""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from accounts.urls import auth_urlpatterns
from chat.urls import api_urlpatterns, share_urlpatterns
from realtime import views as realtime_views

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="chat:index", permanent=False), name="home"),
    path("chat/", include("chat.urls")),
    path("share/", include(share_urlpatterns)),
    path("rooms/", include("rooms.urls")),
    path("voice/", include("voice.urls")),
    path("chat/tokens/", RedirectView.as_view(pattern_name="accounts:tokens", permanent=True)),
    path("accounts/", include(auth_urlpatterns)),
    path("accounts/", include("accounts.urls")),
    path("api/", include(api_urlpatterns)),
    path("healthz", realtime_views.healthz, name="healthz"),
    path("metrics", realtime_views.metrics, name="metrics"),
    path("ops/latency/", realtime_views.latency_dashboard, name="latency-dashboard"),
    path("admin/", admin.site.urls),
]
