"""HTTP endpoints of the core itself."""

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.crypto import constant_time_compare
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

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
