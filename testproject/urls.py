from django.contrib import admin
from django.urls import include, path
from health_check.views import HealthCheckView

from testproject.demo import views

urlpatterns = [
    path("", include("django_observe.urls")),
    path("api/", include(("django_observe.urls", "django_observe"), namespace="api-health")),  # the seed's /api/health
    path("api/ping", views.ping, name="ping"),
    path("api/chat", views.chat, name="chat"),
    path("api/llm/direct", views.llm_direct, name="llm-direct"),
    path("api/campaigns", views.campaign, name="campaign"),
    path("api/messages/<int:message_id>", views.message_detail, name="message-detail"),
    path("api/work", views.work, name="work"),
    path("api/awork", views.awork, name="awork"),
    path("api/crash", views.crash, name="crash"),
    path("api/users/report", views.users_report, name="users-report"),
    path("api/slow", views.slow, name="slow"),
    path("api/stats", views.message_stats, name="message-stats"),
    path("api/db-sleep", views.db_sleep, name="db-sleep"),
    path("api/enqueue", views.enqueue, name="enqueue"),
    path("api/tasks/enqueue", views.enqueue_django_task, name="enqueue-django-task"),
    path("api/rq/enqueue", views.enqueue_rq_job, name="enqueue-rq-job"),
    path("api/outbound", views.outbound, name="outbound"),
    path("api/aoutbound", views.aoutbound, name="aoutbound"),
    path("api/hostile", views.hostile, name="hostile"),
    path("api/hostile/crash", views.hostile_crash, name="hostile-crash"),
    path("admin/", admin.site.urls),
    # django_observe's checks also work in django-health-check's own view.
    path(
        "ops/health-check/",
        HealthCheckView.as_view(checks=["django_observe.health.Database", "django_observe.health.Cache"]),
    ),
]
