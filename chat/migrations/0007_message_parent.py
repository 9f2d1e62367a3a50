"""Messages form a tree: each has a parent, and the path shown is chosen per fork.

Existing conversations are linear: each message's parent is the one before it
(by creation time, then id), and each was chosen when it was made.
"""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

BATCH = 1000


def link_existing_messages(apps, schema_editor):
    Message = apps.get_model("chat", "Message")
    rows = (
        Message.objects.order_by("conversation_id", "created_at", "id")
        .values_list("id", "conversation_id", "created_at")
        .iterator(chunk_size=BATCH)
    )
    batch, previous = [], (None, None)
    for message_id, conversation_id, created_at in rows:
        parent_id = previous[1] if previous[0] == conversation_id else None
        batch.append(Message(pk=message_id, parent_id=parent_id, chosen_at=created_at))
        previous = (conversation_id, message_id)
        if len(batch) >= BATCH:
            Message.objects.bulk_update(batch, ["parent", "chosen_at"])
            batch = []
    Message.objects.bulk_update(batch, ["parent", "chosen_at"])


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0006_highlight_stored_code"),
    ]

    operations = [
        migrations.AddField(
            model_name="message",
            name="chosen_at",
            field=models.DateTimeField(default=django.utils.timezone.now),
        ),
        migrations.AddField(
            model_name="message",
            name="parent",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="children",
                to="chat.message",
            ),
        ),
        migrations.RunPython(link_existing_messages, migrations.RunPython.noop),
    ]
