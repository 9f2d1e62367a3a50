"""The site's URLs plus a view that fails, for tests of what a bug looks like from outside."""

from django.urls import path

from realtime_site.urls import urlpatterns as site_urlpatterns


def broken_view(request):
    raise RuntimeError("secret detail of a bug")


urlpatterns = [path("api/broken", broken_view), path("broken", broken_view), *site_urlpatterns]
