"""A URLconf with Django REST framework views (used only when DRF is installed)."""

from django.urls import include, path
from rest_framework import exceptions
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView


class Fails(APIView):
    renderer_classes = [JSONRenderer]
    authentication_classes = []
    permission_classes = []

    def get(self, request, kind: str):
        errors = {
            "invalid": exceptions.ValidationError({"name": ["required"]}),
            "missing": exceptions.NotFound(),
            "denied": exceptions.PermissionDenied(),
            "throttled": exceptions.Throttled(wait=3),
            "crash": RuntimeError("unhandled in a DRF view"),
        }
        if kind == "ok":
            return Response({"ok": True})
        raise errors[kind]


urlpatterns = [
    path("drf/<str:kind>", Fails.as_view()),
    path("", include("testproject.urls")),
]
