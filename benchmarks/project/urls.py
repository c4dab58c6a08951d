from django.conf import settings
from django.urls import include, path

from . import views

urlpatterns = [
    path("ping", views.ping),
    path("db-cache", views.db_cache),
]
if "django_observe" in settings.INSTALLED_APPS:
    urlpatterns.append(path("", include("django_observe.urls")))
if "django_prometheus" in settings.INSTALLED_APPS:
    urlpatterns.append(path("", include("django_prometheus.urls")))
