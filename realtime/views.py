"""HTTP endpoints of the core itself."""

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from realtime import dashboard
from realtime import metrics as realtime_metrics


@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"status": "ok"})


@require_GET
@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus metrics, for a scraper with METRICS_TOKEN or a staff session; 403 otherwise."""
    if not (_has_metrics_token(request) or _is_staff(request)):
        return HttpResponse("Forbidden\n", status=403, content_type="text/plain")
    body, content_type = realtime_metrics.exposition(request.headers.get("Accept", ""))
    return HttpResponse(body, content_type=content_type)


def _has_metrics_token(request: HttpRequest) -> bool:
    expected = settings.METRICS_TOKEN
    scheme, _, sent = request.headers.get("Authorization", "").partition(" ")
    if not expected or scheme.lower() != "bearer":
        return False
    return constant_time_compare(sent.strip(), expected)


def _is_staff(request: HttpRequest) -> bool:
    user = request.user
    return user.is_active and user.is_staff


@require_GET
@login_required
def latency_dashboard(request: HttpRequest) -> HttpResponse:
    """Staff only: stored latencies of every app over a window (?window=1h|24h|7d)."""
    if not _is_staff(request):
        raise PermissionDenied("The latency dashboard is for staff.")
    window = request.GET.get("window", dashboard.DEFAULT_WINDOW)
    if window not in dashboard.WINDOWS:
        window = dashboard.DEFAULT_WINDOW
    until = timezone.now()
    since = until - dashboard.WINDOWS[window]
    return render(
        request,
        "ops/latency.html",
        {
            "sections": dashboard.sections(since=since, until=until),
            "window": window,
            "windows": list(dashboard.WINDOWS),
            "since": since,
            "until": until,
        },
    )
