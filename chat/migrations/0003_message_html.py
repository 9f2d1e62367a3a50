"""Store each assistant message's rendered HTML instead of rendering on every read."""

from django.db import migrations, models


def render_existing(apps, schema_editor):
    from realtime.rendering import render_markdown

    Message = apps.get_model("chat", "Message")
    batch = []
    for message in Message.objects.filter(role="assistant").only("pk", "content").iterator():
        message.html = render_markdown(message.content)
        batch.append(message)
        if len(batch) >= 500:
            Message.objects.bulk_update(batch, ["html"])
            batch = []
    Message.objects.bulk_update(batch, ["html"])


class Migration(migrations.Migration):
    dependencies = [("chat", "0002_move_apitoken_to_accounts")]

    operations = [
        migrations.AddField(
            model_name="message",
            name="html",
            field=models.TextField(blank=True, editable=False),
        ),
        migrations.RunPython(render_existing, migrations.RunPython.noop),
    ]
