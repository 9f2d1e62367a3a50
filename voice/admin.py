from django.contrib import admin

from voice.models import VoiceSession, VoiceTurn


class VoiceTurnInline(admin.TabularInline):
    model = VoiceTurn
    extra = 0
    can_delete = False
    fields = (
        "index",
        "input",
        "status",
        "user_transcript",
        "assistant_transcript",
        "user_speech_ms",
        "assistant_audio_ms",
        "played_ms",
        "voice_to_voice_ms",
        "error_code",
    )
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(VoiceSession)
class VoiceSessionAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "user",
        "model",
        "vad_backend",
        "status",
        "turns",
        "started_at",
        "ended_at",
    )
    list_filter = ("status", "vad_backend", "model")
    search_fields = ("user__username", "upstream_session_id")
    date_hierarchy = "started_at"
    list_select_related = ("user",)
    readonly_fields = (
        "user",
        "model",
        "vad_backend",
        "upstream_session_id",
        "status",
        "error_code",
        "error_message",
        "conversation_id",
        "turns",
        "started_at",
        "ended_at",
    )
    inlines = [VoiceTurnInline]


@admin.register(VoiceTurn)
class VoiceTurnAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "session",
        "index",
        "input",
        "status",
        "short_user_transcript",
        "voice_to_voice_ms",
        "vad_wait_ms",
        "upstream_ms",
        "played_ms",
    )
    list_filter = ("status", "input")
    search_fields = ("user_transcript", "assistant_transcript", "session__user__username")
    list_select_related = ("session",)
    readonly_fields = [f.name for f in VoiceTurn._meta.fields]

    @admin.display(description="user said")
    def short_user_transcript(self, obj: VoiceTurn) -> str:
        text = obj.user_transcript
        return text[:60] + ("…" if len(text) > 60 else "")

    def has_add_permission(self, request) -> bool:
        return False
