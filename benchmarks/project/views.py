from django.contrib.auth.models import User
from django.core.cache import cache
from django.http import JsonResponse


def ping(request):
    """The trivial view."""
    return JsonResponse({"pong": True})


def db_cache(request):
    """One database query and one cache call."""
    exists = User.objects.filter(pk=1).exists()
    hits = cache.get("bench:hits", 0)
    return JsonResponse({"exists": exists, "hits": hits})
