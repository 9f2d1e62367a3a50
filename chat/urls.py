from django.urls import path

from chat import views

app_name = "chat"

urlpatterns = [
    path("", views.chat_page, name="index"),
    path("<int:conversation_id>/", views.chat_page, name="conversation"),
    path("<int:conversation_id>/delete/", views.delete_conversation, name="delete"),
    path("<int:conversation_id>/rename/", views.rename_conversation, name="rename"),
    path("tokens/", views.api_tokens, name="tokens"),
]
