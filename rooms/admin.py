from django.contrib import admin
from django.utils.text import Truncator

from rooms.models import Membership, Room, RoomMessage

# Long names are cut in list columns, so the latency columns stay on screen.
LIST_NAME_CHARS = 30


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    raw_id_fields = ("user",)


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "owner", "is_private", "ai_mode", "model", "created_at")
    list_filter = ("is_private", "ai_mode", "model", "created_at")
    search_fields = ("name", "slug", "owner__username")
    raw_id_fields = ("owner",)
    readonly_fields = ("invite_code", "created_at", "updated_at")
    prepopulated_fields = {"slug": ("name",)}
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "room", "role", "joined_at")
    list_filter = ("role", "joined_at")
    search_fields = ("user__username", "room__name", "room__slug")
    raw_id_fields = ("user", "room")


@admin.register(RoomMessage)
class RoomMessageAdmin(admin.ModelAdmin):
    list_display = (
        "id", "room_name", "author", "role", "status", "error_code", "model",
        "ttft_ms", "tokens", "tokens_per_second", "created_at",
    )  # fmt: skip
    list_filter = ("role", "status", "error_code", "triggers_ai", "model", "created_at")
    search_fields = ("content", "room__name", "author__username")
    raw_id_fields = ("room", "author", "answered_by")
    readonly_fields = ("created_at", "updated_at")
    list_select_related = ("room", "author")

    @admin.display(description="room", ordering="room__name")
    def room_name(self, obj: RoomMessage) -> str:
        return Truncator(obj.room.name).chars(LIST_NAME_CHARS)
