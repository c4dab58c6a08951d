"""Request metrics, recorded by ``ObserveMiddleware``: one histogram observation per request."""

from __future__ import annotations

import functools
import os
import struct
import threading
import time
import weakref
from bisect import bisect_left
from typing import TYPE_CHECKING, Any

from prometheus_client.samples import Exemplar

from ..requestinfo import STANDARD_METHODS, UNMATCHED_ROUTE, RequestState, hex_ids, span_context, user_id
from .catalogue import OTHER

if TYPE_CHECKING:
    from ..queries import QueryStats
    from .catalogue import Catalogue
    from .exemplars import ExemplarStore

__all__ = ["RequestRecorder", "histogram_parts"]

_EXCLUDED: Any = ("excluded",)  # the resolution of a request of an excluded app (health, metrics)
_RESOLVED_LIMIT = 4096  # (method, route, app, status) combinations remembered; more are resolved each time


def histogram_parts(child: Any) -> tuple[Any, list[Any], list[float]]:
    """``(sum value, bucket values, upper bounds)`` of a histogram child, to observe without ``observe()``.

    ``observe(v)`` is ``_sum.inc(v)`` and one bucket's ``inc(1)`` found by a Python loop, behind two checks
    that a child never fails: on every request that is four calls more than ``_sum.inc(v)`` and
    ``buckets[bisect_left(bounds, v)].inc(1)``. The attributes are private;
    tests/unit/test_private_apis.py fails if prometheus_client changes them.
    """
    return child._sum, child._buckets, child._upper_bounds


# A multiprocess value's file holds (value, timestamp) as two doubles: prometheus_client.mmap_dict writes them
# with one slice assignment (pack_into would expose a zero to a reader in another process).
_VALUE_AND_TIMESTAMP = struct.Struct("dd").pack


def write_through(value: Any, amount: float) -> None:
    """``value.inc(amount)`` of a multiprocess value, for a caller holding its own lock over every writer.

    ``inc()`` takes prometheus_client's process-wide lock, checks the pid and finds the slot on each call
    (about 6,800 instructions); this is the same write (value, then its slot in the process's file, timestamp
    0 as ``inc()`` writes it) in under half. The attributes are private; tests/unit/test_private_apis.py fails
    if prometheus_client changes them.
    """
    value._value += amount
    file = value._file
    position = file._positions[value._key]
    file._m[position : position + 16] = _VALUE_AND_TIMESTAMP(value._value, 0.0)


def _forked(recorder: weakref.ref[RequestRecorder]) -> None:
    alive = recorder()
    if alive is not None:
        alive._forked = True  # checked under the recorder's lock on the next write, not here: see _after_fork


class RequestRecorder:
    """Observes ``http_server_request_duration_seconds`` (and the authorized twin) with cached children.

    Args:
        catalogue: the metrics.
        excluded_apps: URL app names whose requests are not recorded (health, metrics).
    """

    def __init__(
        self,
        catalogue: Catalogue,
        excluded_apps: frozenset[str],
        exemplars: bool = False,
        exemplar_store: ExemplarStore | None = None,
    ):
        self.catalogue = catalogue
        # Single process: prometheus_client keeps the exemplar itself. Multiprocess: our store does.
        self.exemplars = exemplars
        self.exemplar_store = exemplar_store
        shape = catalogue.request_duration_shape
        self._histogram_name = shape.name
        if exemplar_store is not None:
            exemplar_store.declare(shape.name, shape.labelnames, shape.upper_bounds)
        self.excluded_apps = excluded_apps
        self._route = catalogue.guard("http_server_request_duration_seconds", "route")
        self._children: dict[tuple[str, str, str], Any] = {}
        self._resolved: dict[tuple[str, str | None, str | None, int], Any] = {}
        self._authorized_children: dict[tuple[str, str, str], Any] = {}
        self._exception_children: dict[tuple[str, str], Any] = {}
        self._query_children: dict[str, Any] = {}
        # prometheus_client locks each value on every inc(): five times a request, and in multiprocess mode it
        # also checks the pid and finds the value's slot in its file each time. The values this recorder moves
        # (in-flight, the request and query histograms) have no other writer, so it writes them under one lock
        # of its own: in single-process mode by adding to them (the in-flight gauge reads the length of a list
        # that requests append to and pop from), in multiprocess mode through write_through().
        self._active = catalogue.active_requests._value
        self._lock = threading.Lock()
        self._multiprocess: bool = self._active._multiprocess
        self._forked = False
        self._in_flight: list[None] | None = None
        if self._multiprocess:
            os.register_at_fork(after_in_child=functools.partial(_forked, weakref.ref(self)))
        else:
            in_flight: list[None] = []
            self._in_flight = in_flight
            catalogue.active_requests.set_function(in_flight.__len__)
        # collectors.active_users.ActiveUsers when METRICS_ACTIVE_USERS is on (set by setup).
        self.active_users: Any = None

    def begin(self) -> None:
        """One request more in flight."""
        if self._in_flight is not None:
            self._in_flight.append(None)
            return
        with self._lock:
            if self._forked:
                self._after_fork()
            write_through(self._active, 1)

    def abandon(self) -> None:
        """One request fewer in flight, nothing observed: it ended without a response (an exception through
        the middleware, an ASGI request cancelled when its client went away)."""
        if self._in_flight is not None:
            self._in_flight.pop()
            return
        with self._lock:
            if self._forked:
                self._after_fork()
            write_through(self._active, -1)

    def _after_fork(self) -> None:
        """In a forked child (gunicorn's workers, with --preload), let prometheus_client move every value to
        this process's files first: any call of a value's own methods does. Called under the lock when
        ``_forked`` is set."""
        self._active.get()
        self._forked = False

    def end(
        self,
        request: Any,
        status: int,
        seconds: float,
        state: RequestState | None = None,
        queries: QueryStats | None = None,
    ) -> None:
        """Record the request; ``state`` is what it gathered (authorization), ``queries`` what it ran (None
        with statement counting off)."""
        if self.active_users is not None and request.__dict__.get("user") is not None:
            user = user_id(request)
            if user is not None:
                self.active_users.seen(user)
        method = request.method if request.method in STANDARD_METHODS else "_OTHER"
        match = request.resolver_match
        # Label children are resolved once per (method, route, app, status): a dict lookup per request.
        cached = (method, match.route, match.app_name, status) if match is not None else (method, None, None, status)
        resolved = self._resolved.get(cached)
        if resolved is None:
            resolved = self._resolve(match, method, status)
            # A route folded into __other__ is resolved again each time: the overflow counter counts them.
            if len(self._resolved) < _RESOLVED_LIMIT and (resolved is _EXCLUDED or resolved[0] != OTHER):
                self._resolved[cached] = resolved
        if resolved is _EXCLUDED:
            self.abandon()  # in flight no more, nothing observed
            return
        route, key, (total, buckets, bounds) = resolved
        query_total: Any = None
        query_buckets: Any = None
        query_bounds: Any = None
        count = 0
        if queries is not None:
            parts = self._query_children.get(route)
            if parts is None:
                parts = self._query_children[route] = histogram_parts(self.catalogue.request_db_queries.labels(route))
            query_total, query_buckets, query_bounds = parts
            count = queries.count
            if queries.repeated:
                self.catalogue.repeated_queries.labels(route).inc()
        exemplar = None
        if self.exemplars:
            context = span_context(request)
            if context is not None and context.trace_flags.sampled:
                trace_id, span_id = hex_ids(context)
                exemplar = {"trace_id": trace_id, "span_id": span_id}
        bucket = buckets[bisect_left(bounds, seconds)]
        query_bucket = query_buckets[bisect_left(query_bounds, count)] if query_total is not None else None
        in_flight = self._in_flight
        if in_flight is not None:
            in_flight.pop()
            with self._lock:
                total._value += seconds
                bucket._value += 1
                if query_bucket is not None:
                    query_total._value += count
                    query_bucket._value += 1
        else:
            with self._lock:
                if self._forked:
                    self._after_fork()
                write_through(self._active, -1)
                write_through(total, seconds)
                write_through(bucket, 1)
                if query_bucket is not None:
                    write_through(query_total, count)
                    write_through(query_bucket, 1)
        if exemplar is not None:
            if self.exemplar_store is None:  # single process: prometheus_client keeps it, as observe() would
                bucket.set_exemplar(Exemplar(exemplar, seconds, time.time()))
            else:
                trace_id, span_id = exemplar["trace_id"], exemplar["span_id"]
                self.exemplar_store.record(self._histogram_name, key, seconds, trace_id, span_id)
        if state is not None and state.authorized:
            child = self._authorized_children.get(key)
            if child is None:
                child = self._authorized_children[key] = self.catalogue.authorized_invoke_duration.labels(*key)
            child.observe(seconds)

    def _resolve(self, match: Any, method: str, status: int) -> Any:
        """``(route label, label values, the histogram child's histogram_parts)``, or ``_EXCLUDED`` for an
        excluded app."""
        if match is not None and self.excluded_apps.intersection(match.app_names):
            return _EXCLUDED
        route = self._route(match.route) if match is not None else UNMATCHED_ROUTE
        key = (method, route, str(status))
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.catalogue.request_duration.labels(*key)
        return route, key, histogram_parts(child)

    def exception(self, request: Any, exception: BaseException) -> None:
        match = request.resolver_match
        route = self._route(match.route) if match is not None else UNMATCHED_ROUTE
        key = (route, type(exception).__name__)
        child = self._exception_children.get(key)
        if child is None:
            child = self._exception_children[key] = self.catalogue.exceptions.labels(*key)
        child.inc()
