"""Which models a conversation may pick: the model service's list, cached, within an allow-list.

The model service is asked (`llm.list_models`) at most once per
CHAT_MODELS_CACHE_SECONDS per process; when it fails, the failure is kept for
a shorter while so a down service is not asked on every page, and the
allow-list (or the site's default model alone) is offered meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from realtime import llm

logger = logging.getLogger(__name__)

# A failed listing is asked again after this long (or the cache time, if shorter).
FAILURE_RETRY_SECONDS = 30.0


def merge(listed: list[str] | None, *, allowed: list[str], default: str) -> list[str]:
    """The models to offer: the default first, then the allow-list's models that the
    service lists (all of them when it could not be asked), or, with no allow-list,
    everything it lists."""
    if allowed:
        offered = [m for m in allowed if listed is None or m in listed]
    else:
        offered = sorted(listed or [])
    return list(dict.fromkeys([default, *offered]))


class ModelCatalog:
    def __init__(
        self,
        fetch: Callable[[], Awaitable[list[str]]] = lambda: llm.list_models(),
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._clock = clock  # a test seam
        self._listed: list[str] | None = None
        self._expires_at = float("-inf")
        self._pending: asyncio.Future | None = None

    def reset(self) -> None:
        self._listed, self._expires_at, self._pending = None, float("-inf"), None

    async def listed(self) -> list[str] | None:
        """The service's models (cached), or None if it could not be asked."""
        if self._clock() < self._expires_at:
            return self._listed
        pending = self._pending
        if pending is None or pending.get_loop() is not asyncio.get_running_loop():
            # Concurrent callers share one request.
            pending = self._pending = asyncio.ensure_future(self._refresh())
        return await asyncio.shield(pending)

    async def _refresh(self) -> list[str] | None:
        ttl = settings.CHAT_MODELS_CACHE_SECONDS
        try:
            self._listed = await self._fetch()
        except llm.LLMError as exc:
            logger.warning("model list unavailable code=%s: %s", exc.code, exc.message)
            self._listed = None
            ttl = min(ttl, FAILURE_RETRY_SECONDS)
        finally:
            self._pending = None
        self._expires_at = self._clock() + ttl
        return self._listed

    async def offered(self) -> list[str]:
        return merge(
            await self.listed(), allowed=settings.CHAT_MODELS, default=settings.OPENAI_MODEL
        )


catalog = ModelCatalog()


@receiver(setting_changed)
def _forget_on_setting_change(*, setting: str, **_) -> None:
    if setting in {"OPENAI_BASE_URL", "OPENAI_API_KEY", "CHAT_MODELS_CACHE_SECONDS"}:
        catalog.reset()
