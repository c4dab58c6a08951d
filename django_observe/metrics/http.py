"""Request metrics, recorded by ``ObserveMiddleware``: one histogram observation per request."""

from __future__ import annotations

import functools
import mmap
import os
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

__all__ = ["FileSlots", "RequestRecorder", "histogram_parts"]

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


class FileSlots:
    """Where multiprocess values live in this process's files, to write them without ``inc()``.

    ``inc()`` takes prometheus_client's process-wide lock, checks the pid, finds the value's slot in its file
    and packs value and timestamp into it (about 6,800 instructions, up to six times a request here). A
    value's slot does not move once made (its file only grows), so this maps each file once more, writable,
    as an array of doubles, and a write is ``view[index] = value``: one aligned 8-byte store, which a reader
    never sees half done. The timestamp beside it stays 0.0, as ``inc()`` writes it. The mappings are our
    own, so prometheus_client closing or growing its own never invalidates one; a forked child must
    :meth:`clear` them (they map its parent's files). The attributes read are private;
    tests/unit/test_private_apis.py fails if prometheus_client changes them.
    """

    __slots__ = ("_views",)

    def __init__(self) -> None:
        self._views: dict[str, memoryview[float]] = {}

    def find(self, value: Any) -> tuple[memoryview[float], int]:
        """``(view, index)``: ``view[index]`` is ``value``'s double in this process's file."""
        value.get()  # a child's first call of a value moves every value to its own files
        file = value._file
        position = file._positions[value._key]
        if file._f is None:  # kept in memory: the directory could not take it (metrics.storage)
            return memoryview(file._m).cast("d"), position // 8
        view = self._views.get(file._fname)
        if view is None or position + 16 > len(view) * 8:  # new, or the file grew past our mapping
            view = self._views[file._fname] = memoryview(mmap.mmap(file._f.fileno(), file._capacity)).cast("d")
        return view, position // 8

    def clear(self) -> None:
        """Forget every mapping (the views still held elsewhere keep theirs until dropped)."""
        self._views.clear()


def _forked(recorder: weakref.ref[RequestRecorder]) -> None:
    alive = recorder()
    if alive is not None:
        alive._after_fork()


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
        # that requests append to and pop from), in multiprocess mode by also storing the sum in the value's
        # slot of this process's file (FileSlots).
        self._active = catalogue.active_requests._value
        self._lock = threading.Lock()
        self._multiprocess: bool = self._active._multiprocess
        self._in_flight: list[None] | None = None
        self._slots: FileSlots | None = None
        self._active_slot: tuple[memoryview[float], int] | None = None
        if self._multiprocess:
            self._slots = FileSlots()
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
        self._move_active(1)

    def abandon(self) -> None:
        """One request fewer in flight, nothing observed: it ended without a response (an exception through
        the middleware, an ASGI request cancelled when its client went away)."""
        if self._in_flight is not None:
            self._in_flight.pop()
            return
        self._move_active(-1)

    def _move_active(self, amount: int) -> None:
        active = self._active
        with self._lock:
            slot = self._active_slot
            if slot is None:
                slot = self._active_slot = self._slots.find(active)  # type: ignore[union-attr]
            active._value += amount
            slot[0][slot[1]] = active._value

    def _after_fork(self) -> None:
        """In a forked child (gunicorn's workers with --preload, Celery's pool): the mappings and the slots
        found are the parent's files. Forget them, and the lock (another thread of the parent may have held
        it); the next write finds each value again in this process's files."""
        self._lock = threading.Lock()
        self._resolved = {}
        self._query_children = {}
        self._active_slot = None
        self._slots.clear()  # type: ignore[union-attr]

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
        route, key, (total, buckets, bounds), slots = resolved
        queried: Any = None
        count = 0
        if queries is not None:
            queried = self._query_children.get(route)
            if queried is None:
                queried = self._query_children[route] = self._parts(self.catalogue.request_db_queries.labels(route))
            count = queries.count
            if queries.repeated:
                self.catalogue.repeated_queries.labels(route).inc()
        exemplar = None
        if self.exemplars:
            context = span_context(request)
            if context is not None and context.trace_flags.sampled:
                trace_id, span_id = hex_ids(context)
                exemplar = {"trace_id": trace_id, "span_id": span_id}
        index = bisect_left(bounds, seconds)
        bucket = buckets[index]
        in_flight = self._in_flight
        if in_flight is not None:
            in_flight.pop()
            with self._lock:
                total._value += seconds
                bucket._value += 1
                if queried is not None:
                    query_total, query_buckets, query_bounds = queried[0]
                    query_total._value += count
                    query_buckets[bisect_left(query_bounds, count)]._value += 1
        else:
            active = self._active
            view, total_index, bucket_indices = slots
            with self._lock:
                slot = self._active_slot
                if slot is None:
                    slot = self._active_slot = self._slots.find(active)  # type: ignore[union-attr]
                active._value -= 1
                slot[0][slot[1]] = active._value
                total._value += seconds
                view[total_index] = total._value
                bucket._value += 1
                view[bucket_indices[index]] = bucket._value
                if queried is not None:
                    (query_total, query_buckets, query_bounds), (query_view, query_total_index, query_indices) = queried
                    query_index = bisect_left(query_bounds, count)
                    query_total._value += count
                    query_view[query_total_index] = query_total._value
                    query_bucket = query_buckets[query_index]
                    query_bucket._value += 1
                    query_view[query_indices[query_index]] = query_bucket._value
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

    def _parts(self, child: Any) -> tuple[Any, Any]:
        """``(histogram_parts(child), slots)``; slots, in multiprocess mode: ``(view, index of the sum,
        index of each bucket)`` in this process's file (all of a child's values share one file)."""
        parts = histogram_parts(child)
        if self._slots is None:
            return parts, None
        total, buckets, _ = parts
        found = [self._slots.find(value) for value in (total, *buckets)]
        view = max((view for view, _ in found), key=len)  # the newest mapping: it holds every slot
        return parts, (view, found[0][1], [index for _, index in found[1:]])

    def _resolve(self, match: Any, method: str, status: int) -> Any:
        """``(route label, label values, the histogram child's _parts)``, or ``_EXCLUDED`` for an excluded
        app."""
        if match is not None and self.excluded_apps.intersection(match.app_names):
            return _EXCLUDED
        route = self._route(match.route) if match is not None else UNMATCHED_ROUTE
        key = (method, route, str(status))
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.catalogue.request_duration.labels(*key)
        return (route, key, *self._parts(child))

    def exception(self, request: Any, exception: BaseException) -> None:
        match = request.resolver_match
        route = self._route(match.route) if match is not None else UNMATCHED_ROUTE
        key = (route, type(exception).__name__)
        child = self._exception_children.get(key)
        if child is None:
            child = self._exception_children[key] = self.catalogue.exceptions.labels(*key)
        child.inc()
