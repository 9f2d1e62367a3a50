from django.urls import path

from chat import views

app_name = "chat"

urlpatterns = [
    path("", views.chat_page, name="index"),
    path("<int:conversation_id>/", views.chat_page, name="conversation"),
    path("conversations/", views.conversation_list, name="conversations"),
    path("search/", views.search_conversations, name="search"),
    path("<int:conversation_id>/messages/", views.older_messages, name="older"),
    path("<int:conversation_id>/delete/", views.delete_conversation, name="delete"),
    path("<int:conversation_id>/rename/", views.rename_conversation, name="rename"),
]

# Under /api/ (realtime_site/urls.py): the only routes a bearer token opens.
api_urlpatterns = [
    path("chat/stream", views.stream_chat, name="api-chat-stream"),
    path("chat/stream/<int:message_id>/", views.resume_stream, name="api-chat-resume"),
]
