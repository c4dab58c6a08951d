"""Prometheus metrics: the request, database, cache, Celery and health catalogue, served on a dedicated port.

Public API:

- ``authorization(mechanism)``: time custom authentication/authorization code.
- ``counter()``, ``gauge()``, ``histogram()``: declare business metrics once, at import time; the namespace
  and the cardinality guard apply, and values are summed across processes.
- ``timed(histogram, **labels)``: a decorator or context manager observing a duration.
"""

from .auth import authorization
from .business import counter, gauge, histogram, timed

__all__ = ["authorization", "counter", "gauge", "histogram", "timed"]
