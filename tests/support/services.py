"""The PostgreSQL and Redis every machine runs (CI included), and which parts tests use.

Each suite run uses its own Redis databases and PostgreSQL database names, set
by TEST_SERVICES_SLOT (default 0), so two checkouts can run their suites at once.
"""

from __future__ import annotations

import os

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_URL = "postgres://postgres@127.0.0.1:5432"

_SLOT = int(os.environ.get("TEST_SERVICES_SLOT", "0"))
# Slot 0 uses Redis databases 12 and 13 (14 is the services pass of `make test`);
# slots 1-4 three lower each; TEST_REDIS_DBS="a,b" names two for any slot.
_REDIS_DBS = [
    int(db)
    for db in os.environ.get("TEST_REDIS_DBS", f"{12 - 3 * _SLOT},{13 - 3 * _SLOT}").split(",")
]
if not all(0 <= db <= 15 for db in _REDIS_DBS):
    raise RuntimeError(f"no Redis databases for slot {_SLOT}: set TEST_REDIS_DBS=a,b (0-15)")


def redis_url(purpose: str) -> str:
    """A Redis database of its own for `purpose` ("streams" or "cluster")."""
    return f"redis://127.0.0.1:6379/{_REDIS_DBS[{'streams': 0, 'cluster': 1}[purpose]]}"


def pg_database(name: str) -> str:
    """A PostgreSQL database name of this slot."""
    return name if _SLOT == 0 else f"{name}_{_SLOT}"
