"""The PostgreSQL and Redis every machine runs (CI included), and which parts tests use.

Each suite run uses its own Redis databases and PostgreSQL database names, set
by TEST_SERVICES_SLOT (default 0), so two checkouts can run their suites at once.
"""

from __future__ import annotations

import os

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_URL = "postgres://postgres@127.0.0.1:5432"

_SLOT = int(os.environ.get("TEST_SERVICES_SLOT", "0"))
# Redis has databases 0-15. Each slot's (streams, cluster) databases; 14 is the
# services pass of `make test`. Slots 0-4 step down by three from 12, and slots
# 5 and 6 take the databases those leave between them.
_REDIS_DATABASES = {0: (12, 13), 1: (9, 10), 2: (6, 7), 3: (3, 4), 4: (0, 1), 5: (2, 5), 6: (8, 11)}


def redis_url(purpose: str) -> str:
    """A Redis database of its own for `purpose` ("streams" or "cluster")."""
    if _SLOT not in _REDIS_DATABASES:
        raise ValueError(f"TEST_SERVICES_SLOT must be one of {sorted(_REDIS_DATABASES)}")
    databases = dict(zip(("streams", "cluster"), _REDIS_DATABASES[_SLOT], strict=True))
    return f"redis://127.0.0.1:6379/{databases[purpose]}"


def pg_database(name: str) -> str:
    """A PostgreSQL database name of this slot."""
    return name if _SLOT == 0 else f"{name}_{_SLOT}"
