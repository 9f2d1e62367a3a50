from django.urls import path

from chat import conversation_views, views

app_name = "chat"

urlpatterns = [
    path("", views.chat_page, name="index"),
    path("<int:conversation_id>/", views.chat_page, name="conversation"),
    path("conversations/", views.conversation_list, name="conversations"),
    path("search/", views.search_conversations, name="search"),
    path("<int:conversation_id>/messages/", views.older_messages, name="older"),
    path("<int:conversation_id>/delete/", views.delete_conversation, name="delete"),
    path("<int:conversation_id>/rename/", views.rename_conversation, name="rename"),
    path("models/", conversation_views.models_list, name="models"),
    path("settings/", conversation_views.update_settings, name="new-settings"),
    path("<int:conversation_id>/settings/", conversation_views.update_settings, name="settings"),
    path("<int:conversation_id>/export.md", conversation_views.export_markdown, name="export-md"),
    path("<int:conversation_id>/export.json", conversation_views.export_json, name="export-json"),
    path("<int:conversation_id>/share/", conversation_views.share, name="share"),
    path("<int:conversation_id>/share/revoke/", conversation_views.revoke_share, name="unshare"),
]

# At the site's root (realtime_site/urls.py): open to anyone with the link.
share_urlpatterns = [
    path("<str:token>/", conversation_views.shared_page, name="shared"),
]

# Under /api/ (realtime_site/urls.py): the only routes a bearer token opens.
api_urlpatterns = [
    path("chat/stream", views.stream_chat, name="api-chat-stream"),
    path("chat/stream/<int:message_id>/", views.resume_stream, name="api-chat-resume"),
]
