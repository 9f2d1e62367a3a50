from django.contrib import admin
from django.utils.text import Truncator

from chat.models import Conversation, Message

# Long titles are cut in list columns, so the latency columns stay on screen.
LIST_TITLE_CHARS = 40


def short(text: str) -> str:
    return Truncator(text).chars(LIST_TITLE_CHARS)


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    fields = ("role", "status", "error_code", "content", "ttft_ms", "tokens_per_second")
    readonly_fields = ("ttft_ms", "tokens_per_second")
    show_change_link = True


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = (
        "id", "short_title", "owner", "model", "message_count", "created_at", "updated_at",
    )  # fmt: skip
    list_filter = ("created_at", "model")
    search_fields = ("title", "owner__username")
    raw_id_fields = ("owner",)
    date_hierarchy = "created_at"
    inlines = [MessageInline]

    @admin.display(description="title", ordering="title")
    def short_title(self, obj: Conversation) -> str:
        return short(obj.title)

    @admin.display(description="messages")
    def message_count(self, obj: Conversation) -> int:
        return obj.messages.count()


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = (
        "id", "conversation_title", "role", "status", "error_code", "model",
        "ttft_ms", "tokens", "tokens_per_second", "total_ms", "created_at",
    )  # fmt: skip
    list_filter = ("role", "status", "error_code", "model", "created_at")
    search_fields = ("content", "conversation__title", "conversation__owner__username")
    raw_id_fields = ("conversation",)
    readonly_fields = ("created_at", "updated_at")
    list_select_related = ("conversation",)

    @admin.display(description="conversation", ordering="conversation__title")
    def conversation_title(self, obj: Message) -> str:
        return short(str(obj.conversation))
