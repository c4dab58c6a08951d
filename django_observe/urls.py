"""``path("", include("django_observe.urls"))``; mount under ``"api/"`` to get ``/api/health``."""

from django.apps import apps
from django.urls import include, path

from .health import views
from .metrics import views as metrics_views

app_name = "django_observe"

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("health", views.health, name="health"),
    path("health/<str:check_id>", views.health_check_detail, name="health-check"),
    path("metrics", metrics_views.metrics, name="metrics"),
]

if apps.is_installed("django_observe.console"):  # the console, at observe/ under the same prefix
    urlpatterns.append(path("observe/", include("django_observe.console.urls")))
