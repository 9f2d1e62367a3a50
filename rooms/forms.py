"""The form that creates a room; the room itself is made by services.create_room."""

from __future__ import annotations

from django import forms

from rooms.models import Room

PUBLIC, PRIVATE = "public", "private"


class RoomForm(forms.Form):
    name = forms.CharField(max_length=100, widget=forms.TextInput(attrs={"autofocus": True}))
    visibility = forms.ChoiceField(
        choices=[
            (PUBLIC, "Public: every signed-in person can find and enter it"),
            (PRIVATE, "Private: only people with its invite link can join"),
        ],
        initial=PUBLIC,
        widget=forms.RadioSelect,
    )
    ai_mode = forms.ChoiceField(
        label="The AI answers",
        choices=[
            (Room.AiMode.EVERY, "Every message"),
            (Room.AiMode.MENTION, "Only messages that mention @ai"),
        ],
        initial=Room.AiMode.EVERY,
        widget=forms.RadioSelect,
    )
    system_prompt = forms.CharField(
        label="Instructions for the AI",
        required=False,
        max_length=4000,
        help_text="Optional. Empty: the site's default instructions for a group chat.",
        widget=forms.Textarea(attrs={"rows": 3}),
    )

    def room_fields(self) -> dict:
        """The cleaned data as services.create_room's arguments."""
        data = self.cleaned_data
        return {
            "name": data["name"],
            "is_private": data["visibility"] == PRIVATE,
            "ai_mode": data["ai_mode"],
            "system_prompt": data["system_prompt"].strip(),
        }
