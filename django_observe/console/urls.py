"""The console's URLs, included by ``django_observe.urls`` at ``observe/`` when the app is installed."""

from django.urls import path

from . import views

app_name = "console"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("requests/<str:correlation_id>", views.request_detail, name="request"),
    path("exceptions/<str:group>", views.exception_group, name="exception"),
    path("assets/<str:name>", views.asset, name="asset"),
]
