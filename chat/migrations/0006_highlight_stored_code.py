"""Re-render stored answers with fenced code: code blocks are now highlighted."""

from django.db import migrations
from django.db.models import Q


def highlight_existing(apps, schema_editor):
    # Today's renderer, not a historical one: stored HTML should match what new
    # answers get.
    from realtime.rendering import render_markdown

    Message = apps.get_model("chat", "Message")
    fenced = Q(content__contains="```") | Q(content__contains="~~~")
    batch = []
    for message in Message.objects.filter(fenced, role="assistant").only("pk", "content").iterator():
        message.html = render_markdown(message.content)
        batch.append(message)
        if len(batch) >= 500:
            Message.objects.bulk_update(batch, ["html"])
            batch = []
    Message.objects.bulk_update(batch, ["html"])


class Migration(migrations.Migration):
    dependencies = [("chat", "0005_conversation_settings_and_share")]

    operations = [migrations.RunPython(highlight_existing, migrations.RunPython.noop)]
