"""Schema moves keep their data: API tokens moved from chat to accounts."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from accounts.models import ApiToken

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services]

BEFORE_THE_MOVE = [("chat", "0001_initial"), ("accounts", None)]


def migrate(targets) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor


@pytest.fixture
def before_the_move():
    """The schema as it was before the move; back to the latest afterwards."""
    executor = migrate(BEFORE_THE_MOVE)
    yield executor.loader.project_state([("chat", "0001_initial")]).apps
    latest = MigrationExecutor(connection)
    migrate(latest.loader.graph.leaf_nodes())


def test_api_tokens_move_to_accounts_with_their_ids_and_keys(before_the_move):
    old_apps = before_the_move
    user = old_apps.get_model("auth", "User").objects.create(username="mover")
    old_token = old_apps.get_model("chat", "ApiToken")
    for number, pk in enumerate((41, 42)):
        old_token.objects.create(
            pk=pk, user_id=user.pk, name=f"t{number}", key_hash=f"{number}" * 64, key_prefix="rt_x"
        )

    migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())

    moved = list(ApiToken.objects.order_by("pk").values_list("pk", "user_id", "name", "key_hash"))
    assert moved == [(41, user.pk, "t0", "0" * 64), (42, user.pk, "t1", "1" * 64)]
    assert "chat_apitoken" not in connection.introspection.table_names()
    # New tokens continue after the copied ids (PostgreSQL's sequence was moved on).
    fresh = ApiToken.objects.create(user_id=user.pk, name="new", key_hash="f" * 64, key_prefix="x")
    assert fresh.pk > 42
