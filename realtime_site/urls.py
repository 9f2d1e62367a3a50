from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView

from chat import views as chat_views

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="chat:index", permanent=False)),
    path("chat/", include("chat.urls")),
    path("api/chat/stream", chat_views.stream_chat, name="api-chat-stream"),
    path("api/chat/stream/<int:message_id>/", chat_views.resume_stream, name="api-chat-resume"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/signup/", chat_views.signup, name="signup"),
    path("healthz", chat_views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
]
