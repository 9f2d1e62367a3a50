"""The PostgreSQL and Redis every machine runs (CI included), and which parts tests use.

Each suite run uses its own Redis databases and PostgreSQL database names, set
by TEST_SERVICES_SLOT (default 0), so two checkouts can run their suites at once.
"""

from __future__ import annotations

import os

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_URL = "postgres://postgres@127.0.0.1:5432"

_SLOT = int(os.environ.get("TEST_SERVICES_SLOT", "0"))
# Slot 0 uses Redis databases 12 and 13 (14 is the services pass of `make test`).
_REDIS_BASE = 12 - 3 * _SLOT


def redis_url(purpose: str) -> str:
    """A Redis database of its own for `purpose` ("streams" or "cluster")."""
    return f"redis://127.0.0.1:6379/{_REDIS_BASE + {'streams': 0, 'cluster': 1}[purpose]}"


def pg_database(name: str) -> str:
    """A PostgreSQL database name of this slot."""
    return name if _SLOT == 0 else f"{name}_{_SLOT}"
