"""The site's URLs plus views that fail in each way a page can, for the error pages' tests."""

from django.core.exceptions import PermissionDenied, SuspiciousOperation
from django.urls import path

from realtime_site.urls import urlpatterns as site_urlpatterns


def forbidden(request):
    raise PermissionDenied("Only the room's owner may do that.")


def bad_request(request):
    raise SuspiciousOperation("a malformed request")


def server_error(request):
    raise RuntimeError("secret detail of a bug")


urlpatterns = [
    path("fail/403", forbidden),
    path("fail/400", bad_request),
    path("fail/500", server_error),
    *site_urlpatterns,
]
