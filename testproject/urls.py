from django.contrib import admin
from django.urls import include, path

from testproject.demo import views

urlpatterns = [
    path("", include("django_observe.urls")),
    path("api/", include(("django_observe.urls", "django_observe"), namespace="api-health")),  # the seed's /api/health
    path("api/ping", views.ping, name="ping"),
    path("api/chat", views.chat, name="chat"),
    path("api/messages/<int:message_id>", views.message_detail, name="message-detail"),
    path("admin/", admin.site.urls),
]
