"""The console's recorder: what this process observed, aggregated in memory and written in batches.

Every process keeps one :class:`ConsoleRecorder` (``runtime.console``, None without the console app). The
hooks (the middleware's request end, the statement wrapper, cache, outbound, task and LLM hooks) call it;
it only adds to dictionaries under a lock: no I/O on a request's path. A daemon thread
(:class:`~django_observe.console.flusher.Flusher`) swaps the buffers every ``CONSOLE_FLUSH_SECONDS`` and
writes them to the console's database alias.

What is kept:

- **aggregates** by ``(type, key, minute)``: count, total and peak milliseconds, errors, a free value and,
  for latencies, a fixed log-linear histogram (:data:`BOUNDS_MS`) that merges by addition across processes,
  so percentiles come from merged buckets, never from averaged percentiles;
- **entries**: the kept requests (slow, failed or sampled) with their timeline and log lines, exception
  occurrences with a redacted traceback, failed jobs;
- **values**: what is true now (servers, health checks), one row per key.

Memory is bounded: at most ``CONSOLE_MAX_KEYS`` aggregate cells and ``CONSOLE_MAX_ENTRIES`` entries per
batch; what does not fit is counted (``overflow``) and written as such, never grown.
"""

from __future__ import annotations

import bisect
import contextvars
import dataclasses
import hashlib
import os
import random
import re
import socket
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from ..llm.content import WithheldTexts
from ..redaction import get_redactor, redact, redact_url
from ..requestinfo import EXCEPTION_ATTR, hex_ids, method, route, span_context, user_id

__all__ = [
    "BOUNDS_MS",
    "PERIODS",
    "Batch",
    "Cell",
    "ConsoleOptions",
    "ConsoleRecorder",
    "RequestScope",
    "active",
    "exception_group",
    "key_hash",
    "normalize_sql",
    "percentile",
]

# Upper bounds (ms) of the latency histogram's bins; one more bin holds everything slower.
BOUNDS_MS: tuple[float, ...] = (5, 10, 25, 50, 75, 100, 150, 250, 400, 600, 1000, 1500, 2500, 5000, 10000)
BINS = len(BOUNDS_MS) + 1
# Period name -> (window seconds, bucket seconds): each period is read as about 60 buckets.
PERIODS: dict[str, tuple[int, int]] = {
    "1h": (3600, 60),
    "6h": (21600, 360),
    "24h": (86400, 1440),
    "7d": (604800, 10080),
}
TIMELINE_LIMIT = 200
LOG_LIMIT = 50
STATEMENT_CHARS = 1000
HOST = socket.gethostname()


@dataclasses.dataclass(frozen=True)
class ConsoleOptions:
    """The console's settings (``DJANGO_OBSERVE["CONSOLE_*"]``), see docs/configuration.md."""

    database: str = "default"
    flush_seconds: float = 5.0
    retention_days: int = 7
    slow_request_ms: float = 1000.0
    slow_query_ms: float = 100.0
    sample_rate: float = 0.0
    max_keys: int = 5000
    max_entries: int = 200
    repeated_query_threshold: int = 10
    trace_url: str | None = None
    permission: Any = None
    redact_keys: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, config: Any) -> ConsoleOptions:
        return cls(
            database=config.console_database,
            flush_seconds=config.console_flush_seconds,
            retention_days=config.console_retention_days,
            slow_request_ms=config.console_slow_request_ms,
            slow_query_ms=config.console_slow_query_ms,
            sample_rate=config.console_sample_rate,
            max_keys=config.console_max_keys,
            max_entries=config.console_max_entries,
            repeated_query_threshold=config.db_repeated_query_threshold,
            trace_url=config.console_trace_url,
            permission=config.console_permission,
            redact_keys=tuple(config.log_redact_keys + config.log_redact_paths),
        )


class Cell:
    """One aggregate: what happened to one key in one minute (or, once merged, one bucket)."""

    __slots__ = ("count", "errors", "hist", "peak", "total", "value")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.peak = 0.0
        self.errors = 0
        self.value = 0.0
        self.hist: list[int] | None = None

    def merge(self, other: Cell) -> None:
        self.count += other.count
        self.total += other.total
        if other.peak > self.peak:
            self.peak = other.peak
        self.errors += other.errors
        self.value += other.value
        if other.hist is not None:
            if self.hist is None:
                self.hist = list(other.hist)
            else:
                self.hist = [a + b for a, b in zip(self.hist, other.hist, strict=True)]


def bin_index(ms: float) -> int:
    """The histogram bin of a duration in milliseconds."""
    return bisect.bisect_left(BOUNDS_MS, ms)


def percentile(hist: list[int] | tuple[int, ...], q: float) -> float | None:
    """The ``q`` quantile (0..1) of a histogram, interpolated linearly inside its bin; None when empty.

    The last bin has no upper bound: a quantile that falls there is reported as its lower bound.
    """
    total = sum(hist)
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(hist):
        if count and seen + count >= rank:
            lower = BOUNDS_MS[index - 1] if index > 0 else 0.0
            if index >= len(BOUNDS_MS):
                return float(lower)
            upper = BOUNDS_MS[index]
            return lower + (upper - lower) * max(rank - seen, 0) / count
        seen += count
    return float(BOUNDS_MS[-1])


def key_hash(kind: str, key: str) -> str:
    """The 32-hex digest identifying an aggregate key (stored keys may be long SQL)."""
    return hashlib.blake2b(f"{kind}\x00{key}".encode(), digest_size=16).hexdigest()


# --- SQL normalization: no literal ever reaches the console's tables.

_SQL_STRING = re.compile(r"'(?:[^']|'')*'")
_SQL_NUMBER = re.compile(r"(?<![\w$.])-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?\b")
_SQL_PLACEHOLDER_LIST = re.compile(r"\((?:\s*(?:%s|\?|\$\d+)\s*,)+\s*(?:%s|\?|\$\d+)\s*\)")
_SQL_SPACE = re.compile(r"\s+")
# Django's savepoint names carry the thread's id ("s140623175187328_x1"): one shape for all of them.
_SQL_SAVEPOINT = re.compile(r'"s\d+_x\d+"')
_normalized: dict[str, str] = {}


def normalize_sql(sql: str) -> str:
    """SQL without literal values: strings and numbers become ``?``, ``IN (%s, %s, ...)`` becomes ``IN (...)``.

    Django sends parameters separately (``WHERE id = %s``), so this mostly guards raw SQL; the result is
    cached per statement text (bounded).
    """
    cached = _normalized.get(sql)
    if cached is not None:
        return cached
    text = _SQL_STRING.sub("?", sql)
    text = _SQL_NUMBER.sub("?", text)
    text = _SQL_PLACEHOLDER_LIST.sub("(...)", text)
    text = _SQL_SAVEPOINT.sub('"s?_x?"', text)
    text = _SQL_SPACE.sub(" ", text).strip()[:STATEMENT_CHARS]
    if len(_normalized) >= 2000:
        _normalized.clear()
    _normalized[sql] = text
    return text


def exception_group(exc: BaseException) -> tuple[str, str]:
    """``(type name, location)`` of an exception: its qualified class and the innermost frame's file:line."""
    kind = f"{type(exc).__module__}.{type(exc).__qualname__}".removeprefix("builtins.")
    tb = exc.__traceback__
    location = "?"
    while tb is not None:
        location = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"
        tb = tb.tb_next
    return kind, location


class RequestScope:
    """What one request did, in order: its timeline (statements, cache calls, outbound calls, LLM calls,
    task enqueues) and its log lines. Bounded; only written when the request is kept."""

    __slots__ = ("dropped", "logs", "shapes", "start", "timeline")

    def __init__(self) -> None:
        self.start = time.perf_counter_ns()
        self.timeline: list[tuple[str, str, float, float]] = []
        self.logs: list[dict[str, Any]] = []
        self.shapes: dict[str, int] | None = None
        self.dropped = 0

    def event(self, kind: str, label: str, started_ns: int, ms: float) -> None:
        if len(self.timeline) >= TIMELINE_LIMIT:
            self.dropped += 1
            return
        self.timeline.append((kind, label, round((started_ns - self.start) / 1e6, 3), round(ms, 3)))


scope_var: contextvars.ContextVar[RequestScope | None] = contextvars.ContextVar(
    "django_observe_console_scope", default=None
)


# True in the flush thread and while a console page renders: their own statements and cache calls are not the
# application's.
quiet: contextvars.ContextVar[bool] = contextvars.ContextVar("django_observe_console_quiet", default=False)


@dataclasses.dataclass
class Batch:
    """What a flush writes: aggregates by ``(type, key, minute)``, entries by table, values by ``(type, key)``."""

    cells: dict[tuple[str, str, int], Cell] = dataclasses.field(default_factory=dict)
    entries: dict[str, list[dict[str, Any]]] = dataclasses.field(default_factory=dict)
    values: dict[tuple[str, str], dict[str, Any]] = dataclasses.field(default_factory=dict)
    overflow: int = 0

    def __bool__(self) -> bool:
        return bool(self.cells or self.entries or self.values or self.overflow)


class ConsoleRecorder:
    """Aggregates in memory; :meth:`take` hands the batch to the flusher.

    Args:
        options: the console settings.
        clock: seconds since the epoch (tests and the benchmark's seeding pass their own).
    """

    def __init__(self, options: ConsoleOptions, clock: Callable[[], float] = time.time) -> None:
        self.options = options
        self.clock = clock
        self._lock = threading.Lock()
        self._batch = Batch()
        self.flusher: Any = None  # the Flusher thread, started with the first record
        # Starts the flush thread (``hooks`` sets it; tests and benchmarks flush by hand).
        self.starter: Callable[[ConsoleRecorder], Any] | None = None
        self.pid = os.getpid()
        self._redact_keys = frozenset(k.lower() for k in options.redact_keys)
        self._redactor = get_redactor(options.redact_keys)
        # The messages of exceptions that left LLM calls (content capture off): kept out of stored texts.
        self.withheld: WithheldTexts | None = None

    # --- buffers

    def take(self) -> Batch:
        """The batch gathered so far, replaced by an empty one."""
        with self._lock:
            batch, self._batch = self._batch, Batch()
        return batch

    def _ensure_flusher(self) -> None:
        if (self.flusher is None or self.pid != os.getpid()) and self.starter is not None:
            self.pid = os.getpid()
            self.flusher = self.starter(self)

    def add(
        self,
        kind: str,
        key: str,
        ms: float | None = None,
        *,
        errors: int = 0,
        value: float = 0.0,
        count: int = 1,
        histogram: bool = False,
        at: float | None = None,
    ) -> None:
        """Add to the aggregate ``kind``/``key`` of the current minute."""
        minute = int((self.clock() if at is None else at) // 60)
        index = bin_index(ms) if histogram and ms is not None else -1
        with self._lock:
            cells = self._batch.cells
            cell = cells.get((kind, key, minute))
            if cell is None:
                if len(cells) >= self.options.max_keys:
                    self._batch.overflow += count
                    return
                cell = cells[(kind, key, minute)] = Cell()
            cell.count += count
            if ms is not None:
                cell.total += ms * count
                if ms > cell.peak:
                    cell.peak = ms
            cell.errors += errors
            cell.value += value
            if index >= 0:
                if cell.hist is None:
                    cell.hist = [0] * BINS
                cell.hist[index] += count
        if self.flusher is None:
            self._ensure_flusher()

    def entry(self, table: str, row: dict[str, Any]) -> None:
        """Keep one entry (a kept request, an exception occurrence, a failed job)."""
        with self._lock:
            rows = self._batch.entries.setdefault(table, [])
            if len(rows) >= self.options.max_entries:
                self._batch.overflow += 1
                return
            rows.append(row)
        if self.flusher is None:
            self._ensure_flusher()

    def set_value(self, kind: str, key: str, data: dict[str, Any]) -> None:
        """What is true now for ``kind``/``key`` (a server, a health check)."""
        with self._lock:
            self._batch.values[(kind, key)] = data

    def redact(self, value: Any) -> Any:
        return redact(value, self._redact_keys) if self._redact_keys else redact(value)

    def redact_text(self, text: str) -> str:
        """``text`` as it may be stored: without LLM content (content capture off) and redacted with the
        project's extra keys and secret routes (``LOG_REDACT_KEYS``, ``LOG_REDACT_PATHS``), as log lines are."""
        withheld = self.withheld
        if withheld is not None:
            text = withheld.scrub(text)
        return self._redactor.redact_text(text)

    # --- requests

    def begin(self) -> RequestScope:
        """Open the current request's scope (the middleware, before the view)."""
        scope = RequestScope()
        scope_var.set(scope)
        return scope

    def abandon(self) -> None:
        scope_var.set(None)

    def end_request(self, request: Any, status: int, elapsed_ns: int, correlation_id: str) -> None:
        """The middleware's hook at the end of a request (never raises)."""
        try:
            context = span_context(request)
            self.end(
                request,
                status,
                elapsed_ns,
                correlation_id,
                route=route(request),
                method=method(request),
                user=user_id(request),
                exception=request.__dict__.get(EXCEPTION_ATTR),
                trace_id=hex_ids(context)[0] if context is not None else None,
            )
        except Exception:  # the console never fails a request
            scope_var.set(None)

    def end(
        self,
        request: Any,
        status: int,
        elapsed_ns: int,
        correlation_id: str,
        *,
        route: str,
        method: str,
        user: str | None,
        exception: BaseException | None,
        trace_id: str | None = None,
    ) -> None:
        """Record a finished request; keep it when slow, failed or sampled."""
        scope = scope_var.get()
        scope_var.set(None)
        if getattr(request, "_observe_console", False):
            return  # the console's own pages
        ms = elapsed_ns / 1e6
        failed = status >= 500
        now = self.clock()
        endpoint = f"{method} {route}"
        self.add("request", endpoint, ms, errors=failed, histogram=True, at=now)
        self.add("all", "", ms, errors=failed, value=status >= 400, histogram=True, at=now)
        if user is not None:
            self.add("user", user, ms, at=now)
        group = None
        if exception is not None:
            group = self.exception(exception, correlation_id=correlation_id, where=endpoint, at=now)
        repeats = 0
        if scope is not None and scope.shapes:
            worst = max(scope.shapes.values())
            if worst > self.options.repeated_query_threshold:
                repeats = worst
                self.add("n_plus_one", endpoint, value=worst, at=now)
        slow = ms >= self.options.slow_request_ms
        sampled = not (slow or failed) and self.options.sample_rate and random.random() < self.options.sample_rate
        if not (slow or failed or sampled):
            return
        self.add("slow_request" if slow else "kept_request", endpoint, ms, at=now)
        self.entry(
            "request",
            {
                "correlation_id": correlation_id[:128],
                "at": now,
                "method": method,
                "route": route[:255],
                "path": redact_url(self.redact_text(request.path))[:500],
                "status": status,
                "duration_ms": round(ms, 3),
                "reason": "slow" if slow else "failed" if failed else "sampled",
                "user_id": user,
                "trace_id": trace_id or "",
                "exception_group": group or "",
                "repeats": repeats,
                "timeline": self.redact(scope.timeline) if scope is not None else [],
                "logs": scope.logs if scope is not None else [],
                "dropped": scope.dropped if scope is not None else 0,
            },
        )

    def exception(self, exc: BaseException, *, correlation_id: str | None, where: str, at: float | None = None) -> str:
        """Count an exception in its group and keep the occurrence; returns the group's hash."""
        kind, location = exception_group(exc)
        label = f"{kind} at {location}"
        group = key_hash("exception", label)
        self.add("exception", label, at=at)
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        self.entry(
            "exception",
            {
                "group": group,
                "at": self.clock() if at is None else at,
                "type": kind[:255],
                "location": location[:500],
                "message": self.redact_text(str(exc))[:2000],
                "traceback": self.redact_text(text)[-8000:],
                "correlation_id": (correlation_id or "")[:128],
                "where": where[:255],
            },
        )
        return group

    # --- what happens inside requests and tasks

    def query(self, sql: str, seconds: float, started_ns: int) -> None:
        if quiet.get():
            return
        shape = normalize_sql(sql)
        ms = seconds * 1000
        self.add("query", shape, ms, errors=ms >= self.options.slow_query_ms)
        scope = scope_var.get()
        if scope is not None:
            shapes = scope.shapes
            if shapes is None:
                shapes = scope.shapes = {}
            shapes[shape] = shapes.get(shape, 0) + 1
            scope.event("query", shape[:300], started_ns, ms)

    def cache(self, alias: str, operation: str, hit: bool | None, started_ns: int, ms: float) -> None:
        if quiet.get():
            return
        if hit is not None:
            self.add("cache", alias, value=1.0 if hit else 0.0)
        scope = scope_var.get()
        if scope is not None:
            result = "" if hit is None else " hit" if hit else " miss"
            scope.event("cache", f"{operation} {alias}{result}", started_ns, ms)

    def outbound(self, method: str, url: str, status: int | None, started_ns: int, ms: float) -> None:
        host = _host(url)
        self.add("outbound", host, ms, errors=status is None or status >= 500, histogram=True)
        scope = scope_var.get()
        if scope is not None:
            shown = f"{method} {host} {status if status is not None else 'error'}"
            scope.event("outbound", shown, started_ns, ms)

    def llm(
        self,
        model: str,
        provider: str,
        ms: float,
        input_tokens: int | None,
        output_tokens: int | None,
        cost: float | None,
        error: bool,
        started_ns: int,
    ) -> None:
        key = f"{provider}/{model}" if provider else model
        self.add("llm", key, ms, errors=error, value=cost or 0.0)
        self.add("llm_tokens", key, value=float(output_tokens or 0), count=int(input_tokens or 0))
        scope = scope_var.get()
        if scope is not None:
            scope.event("llm", f"{key} in={input_tokens or 0} out={output_tokens or 0}", started_ns, ms)

    def llm_call(self, call: Any, seconds: float) -> None:
        """An ``llm_call`` block ended (``django_observe.integrations.genai``): never raises."""
        try:
            cost = getattr(call, "cost", None)
            self.llm(
                str(call.response_model or call.request_model or "unknown"),
                str(call.provider or ""),
                seconds * 1000,
                call.input_tokens,
                call.output_tokens,
                cost if isinstance(cost, (int, float)) else None,
                call.error_type is not None,
                time.perf_counter_ns() - int(seconds * 1e9),
            )
        except Exception:  # noqa: S110 - the console never fails the application
            pass

    def enqueue(self, task: str, queue: str) -> None:
        self.add("job_enqueued", task)
        scope = scope_var.get()
        if scope is not None:
            scope.event("task", f"enqueue {task} ({queue})", time.perf_counter_ns(), 0.0)

    def job(
        self,
        task: str,
        queue: str,
        ms: float,
        *,
        failed: bool,
        wait_ms: float | None,
        correlation_id: str | None,
        error: BaseException | str | None = None,
        kind: str = "celery",
    ) -> None:
        """A finished task run (Celery, django.tasks): duration, failures and queue wait by task."""
        self.add("job", task, ms, errors=failed, histogram=True)
        if wait_ms is not None:
            self.add("job_wait", task, wait_ms)
        if failed:
            group = ""
            if isinstance(error, BaseException):
                group = self.exception(error, correlation_id=correlation_id, where=f"task {task}")
            message = error if isinstance(error, str) else f"{type(error).__name__}: {error}" if error else ""
            self.entry(
                "job",
                {
                    "at": self.clock(),
                    "task": task[:255],
                    "queue": queue[:255],
                    "kind": kind,
                    "duration_ms": round(ms, 3),
                    "error": self.redact_text(message)[:2000],
                    "correlation_id": (correlation_id or "")[:128],
                    "exception_group": group,
                },
            )

    def log(self, record: Any, message: str) -> None:
        """A log line written while a request runs (kept with the request if it is kept)."""
        scope = scope_var.get()
        if scope is None or len(scope.logs) >= LOG_LIMIT:
            return
        scope.logs.append(
            {
                "at_ms": round((time.perf_counter_ns() - scope.start) / 1e6, 3),
                "level": record.levelname,
                "logger": record.name,
                "message": self.redact_text(message)[:2000],
            }
        )

    def health(self, check_id: str, status: str, ms: float, error: str | None) -> None:
        self.add("health", check_id, ms, errors=status == "fail", value=status == "warn")
        self.set_value(
            "health",
            check_id,
            {"status": status, "duration_ms": round(ms, 3), "error": self.redact_text(error or ""), "host": HOST},
        )


def _host(url: str) -> str:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        return f"{host}:{parts.port}" if parts.port else host
    except ValueError:
        return "?"


# --- the process's recorder

_active: ConsoleRecorder | None = None


def active() -> ConsoleRecorder | None:
    """The recorder of this process, None when the console is not installed."""
    return _active


def activate(options: ConsoleOptions) -> ConsoleRecorder:
    """Install (or reconfigure) the process's recorder; one per process, kept across runtime rebuilds."""
    global _active
    recorder = _active
    if recorder is None:
        recorder = _active = ConsoleRecorder(options)
    elif recorder.options != options:
        recorder.options = options
        recorder._redact_keys = frozenset(k.lower() for k in options.redact_keys)
        recorder._redactor = get_redactor(options.redact_keys)
    return recorder


def deactivate() -> None:
    global _active
    recorder, _active = _active, None
    if recorder is not None and recorder.flusher is not None:
        recorder.flusher.stop()


def _after_fork() -> None:
    recorder = _active
    if recorder is not None:  # threads do not survive fork: the child starts its own with its first record
        recorder.flusher = None
        recorder._lock = threading.Lock()
        recorder._batch = Batch()


os.register_at_fork(after_in_child=_after_fork)
