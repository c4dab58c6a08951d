"""Prometheus metrics: the request, database, cache, Celery and health catalogue, served on a dedicated port.

Public API: ``authorization(mechanism)`` times custom authentication/authorization code.
"""

from .auth import authorization

__all__ = ["authorization"]
