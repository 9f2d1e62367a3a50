"""ApiToken moved to the accounts app: copy the rows over (ids kept), then drop chat's table."""

from django.core.management.color import no_style
from django.db import migrations

FIELDS = ("id", "user_id", "name", "key_hash", "key_prefix", "created_at", "last_used_at")


def _copy(source, target, schema_editor) -> None:
    rows = [target(**{f: getattr(token, f) for f in FIELDS}) for token in source.objects.all()]
    if not rows:
        return
    target.objects.bulk_create(rows)
    # Explicit ids leave PostgreSQL's sequence behind them.
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        for sql in connection.ops.sequence_reset_sql(no_style(), [target]):
            cursor.execute(sql)


def copy_tokens(apps, schema_editor):
    _copy(apps.get_model("chat", "ApiToken"), apps.get_model("accounts", "ApiToken"), schema_editor)


def copy_tokens_back(apps, schema_editor):
    _copy(apps.get_model("accounts", "ApiToken"), apps.get_model("chat", "ApiToken"), schema_editor)


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0001_initial"),
        ("accounts", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(copy_tokens, copy_tokens_back),
        migrations.DeleteModel(name="ApiToken"),
    ]
