from django.urls import path

from rooms import views

app_name = "rooms"

# "new" and "join" are not room slugs (services.RESERVED_SLUGS).
urlpatterns = [
    path("", views.room_list, name="index"),
    path("new/", views.new_room, name="new"),
    path("join/<str:code>/", views.join_by_invite, name="join"),
    path("<slug:slug>/", views.room_page, name="room"),
    path("<slug:slug>/messages/", views.older_messages, name="older"),
    path("<slug:slug>/members/", views.members, name="members"),
    path("<slug:slug>/members/<int:user_id>/remove/", views.remove_member, name="remove-member"),
    path("<slug:slug>/invite/revoke/", views.revoke_invite, name="revoke-invite"),
]
