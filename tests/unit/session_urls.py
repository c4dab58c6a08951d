"""A view that reads ``request.user`` (AuthenticationMiddleware's lazy session user)."""

from django.http import JsonResponse
from django.urls import include, path


def whoami(request):
    return JsonResponse({"authenticated": request.user.is_authenticated})


urlpatterns = [path("whoami", whoami), path("", include("testproject.urls"))]
