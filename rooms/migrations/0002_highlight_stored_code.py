"""Re-render stored AI messages with fenced code: code blocks are now highlighted."""

from django.db import migrations
from django.db.models import Q


def highlight_existing(apps, schema_editor):
    # Today's renderer, not a historical one: stored HTML should match what new
    # answers get.
    from realtime.rendering import render_markdown

    RoomMessage = apps.get_model("rooms", "RoomMessage")
    fenced = Q(content__contains="```") | Q(content__contains="~~~")
    batch = []
    rows = RoomMessage.objects.filter(fenced, role="assistant").only("pk", "content")
    for message in rows.iterator():
        message.html = render_markdown(message.content)
        batch.append(message)
        if len(batch) >= 500:
            RoomMessage.objects.bulk_update(batch, ["html"])
            batch = []
    RoomMessage.objects.bulk_update(batch, ["html"])


class Migration(migrations.Migration):
    dependencies = [("rooms", "0001_initial")]

    operations = [migrations.RunPython(highlight_existing, migrations.RunPython.noop)]
