"""Template context every page needs."""

from django.conf import settings
from django.http import HttpRequest


def site(request: HttpRequest) -> dict:
    """Tell templates which model answers, so the UI can say "demo model"."""
    return {"demo_mode": settings.DEMO_MODE, "default_model": settings.OPENAI_MODEL}
