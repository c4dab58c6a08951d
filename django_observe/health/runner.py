"""Run checks concurrently, each bounded by its timeout, with a short shared cache.

The cache is per check and *single flight*: while one caller runs a check, every
other caller (thread or event loop) waits for that same run instead of starting
its own, so 200 concurrent probes cause one run of each check.

Sync checks run in a small dedicated thread pool, not the event loop's default
executor: a check stuck in a driver call cannot be cancelled, and a loop that
waits for its default executor on shutdown would turn that into a hung request.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import datetime
import inspect
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from .checks import Observation
from .library import HealthCheckException, ServiceWarning
from .registry import CheckSpec

__all__ = ["CheckResult", "HealthRunner", "runner_of"]

logger = logging.getLogger("django_observe.health")

PASS, WARN, FAIL = "pass", "warn", "fail"

_EXECUTOR = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="django_observe_health")


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """The outcome of one run of one check.

    Attributes:
        error: a message safe to show publicly (``Cannot connect to PostgreSQL``).
        detail: the raw error (exception text); shown only to authorized callers, always logged.
    """

    spec: CheckSpec
    status: str
    duration_ms: float
    time: datetime.datetime
    error: str | None = None
    detail: str | None = None
    observation: Observation | None = None

    @property
    def id(self) -> str:
        return self.spec.id


def _raw_detail(exc: BaseException) -> str | None:
    """The underlying error's text (redacted), or None when the public message says it all."""
    from ..redaction import redact_text

    cause = exc.__cause__ if isinstance(exc, HealthCheckException) else exc
    if cause is None:
        return None
    return redact_text(f"{type(cause).__name__}: {cause}")[:500]


async def run_check(
    spec: CheckSpec, on_thread: Callable[[concurrent.futures.Future[Any]], None] | None = None
) -> CheckResult:
    """Run one check, never raising: every failure becomes a ``fail`` or ``warn`` result.

    Args:
        spec: the check.
        on_thread: called with the thread-pool future of a sync check (it may outlive a timeout).
    """
    start = time.perf_counter()
    now = datetime.datetime.now(datetime.UTC)
    status, error, detail, observation = PASS, None, None, None
    try:
        if inspect.iscoroutinefunction(spec.check.run):
            work = spec.check.run()
        else:
            thread = _EXECUTOR.submit(spec.check.run)
            if on_thread is not None:
                on_thread(thread)
            work = asyncio.wrap_future(thread)
        value = await asyncio.wait_for(work, spec.timeout)
        if isinstance(value, Observation):
            observation = value
    except ServiceWarning as exc:
        status, error, detail = WARN, str(exc.message), _raw_detail(exc)
    except HealthCheckException as exc:
        status, error, detail = FAIL, str(exc.message), _raw_detail(exc)
    except TimeoutError:
        status, error = FAIL, f"Timed out after {spec.timeout:g} seconds"
        detail = error
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        status, error, detail = FAIL, "Unexpected error", _raw_detail(exc)
    duration_ms = round((time.perf_counter() - start) * 1000, 3)
    return CheckResult(spec, status, duration_ms, now, error, detail, observation)


@dataclasses.dataclass
class _Plan:
    """One run's share-out: what is answered already, the checks this caller runs, the runs it waits for."""

    results: dict[str, CheckResult] = dataclasses.field(default_factory=dict)
    owned: list[tuple[CheckSpec, concurrent.futures.Future[CheckResult]]] = dataclasses.field(default_factory=list)
    waiting: dict[str, concurrent.futures.Future[CheckResult]] = dataclasses.field(default_factory=dict)


class HealthRunner:
    """Runs a fixed list of checks with a per-check TTL cache and single flight.

    Args:
        specs: the checks.
        ttl: seconds a result is reused (0 disables the cache, not the single flight).
    """

    def __init__(self, specs: Iterable[CheckSpec], ttl: float = 1.0):
        self.specs = {spec.id: spec for spec in specs}
        self.ttl = ttl
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, CheckResult]] = {}
        self._inflight: dict[str, concurrent.futures.Future[CheckResult]] = {}
        # Sync runs that timed out but whose thread has not returned (it cannot be cancelled): not restarted.
        self._threads: dict[str, tuple[float, concurrent.futures.Future[Any]]] = {}
        self.last_results: dict[str, CheckResult] = {}
        self.listeners: list = []  # called with each fresh CheckResult (metrics record them)
        self.runs = 0  # checks actually executed (not served from cache); for tests and metrics
        self.refreshes = 0  # background refreshes started by serve_stale runs

    def clear_cache(self) -> None:
        """Forget the cached results: the next run of each check runs it."""
        self._cache.clear()

    def select(self, *, critical_only: bool = False, exclude: Iterable[str] = ()) -> list[CheckSpec]:
        skipped = set(exclude)
        return [spec for spec in self.specs.values() if spec.id not in skipped and (spec.critical or not critical_only)]

    async def run(self, specs: Iterable[CheckSpec], *, serve_stale: bool = False) -> list[CheckResult]:
        """Results for ``specs`` (fresh, cached or shared with a concurrent caller), in order.

        Args:
            serve_stale: a check that has a previous result answers with it at once when its cache expired,
                and one refresh runs in a background thread (readiness: a hung dependency never holds the
                callers, so it never holds the server's workers that liveness probes need). Only a check that
                never ran is waited for.
        """
        specs = list(specs)
        plan = self._plan(specs, serve_stale)
        if plan.owned or plan.waiting:
            await self._complete(plan)
        return [plan.results[spec.id] for spec in specs]

    def run_sync(self, specs: Iterable[CheckSpec], *, serve_stale: bool = False) -> list[CheckResult]:
        """:meth:`run` for a thread without a running event loop (a WSGI worker, a management command).

        What the cache or a previous result answers (readiness polled within the TTL, or served stale while a
        refresh runs) is returned without an event loop; a loop runs in this thread only when a check must be
        waited for. ``async_to_sync`` would start a thread and an event loop for every probe instead.
        """
        specs = list(specs)
        plan = self._plan(specs, serve_stale)
        if plan.owned or plan.waiting:
            asyncio.run(self._complete(plan))
        return [plan.results[spec.id] for spec in specs]

    def _plan(self, specs: list[CheckSpec], serve_stale: bool) -> _Plan:
        """Take what the cache answers, join the runs under way, own the rest; start the background refreshes."""
        now = time.monotonic()
        plan = _Plan()
        background: list[tuple[CheckSpec, concurrent.futures.Future[CheckResult]]] = []
        with self._lock:
            for spec in specs:
                cached = self._cache.get(spec.id)
                if cached is not None and now - cached[0] < self.ttl:
                    plan.results[spec.id] = cached[1]
                    continue
                future = self._inflight.get(spec.id)
                if serve_stale and cached is not None:  # expired, not cleared (clear_cache forces a fresh run)
                    plan.results[spec.id] = cached[1]
                    if future is None:
                        future = concurrent.futures.Future()
                        self._inflight[spec.id] = future
                        background.append((spec, future))
                    continue
                if future is None:
                    future = concurrent.futures.Future()
                    self._inflight[spec.id] = future
                    plan.owned.append((spec, future))
                plan.waiting[spec.id] = future
        for spec, future in background:
            self.refreshes += 1
            threading.Thread(
                target=asyncio.run,
                args=(self._run_owned(spec, future),),
                name=f"django_observe health refresh {spec.id}",
                daemon=True,
            ).start()
        return plan

    async def _complete(self, plan: _Plan) -> None:
        """Run the owned checks and wait for every result ``plan`` still lacks."""
        if plan.owned:
            await asyncio.gather(*(self._run_owned(spec, future) for spec, future in plan.owned))
        for check_id, future in plan.waiting.items():
            spec = self.specs[check_id]
            try:
                plan.results[check_id] = await asyncio.wait_for(asyncio.wrap_future(future), spec.timeout + 1)
            except TimeoutError:
                plan.results[check_id] = CheckResult(
                    spec,
                    FAIL,
                    spec.timeout * 1000,
                    datetime.datetime.now(datetime.UTC),
                    f"Timed out after {spec.timeout:g} seconds",
                    "waiting for a concurrent run",
                )

    async def _run_owned(self, spec: CheckSpec, future: concurrent.futures.Future[CheckResult]) -> None:
        result: CheckResult | None = None
        try:
            stuck = self._threads.get(spec.id)
            if stuck is not None and not stuck[1].done():
                result = CheckResult(
                    spec,
                    FAIL,
                    0.0,
                    datetime.datetime.now(datetime.UTC),
                    f"Still running after {time.monotonic() - stuck[0]:.0f}s",
                    "the previous run has not returned; it is not started again",
                )
            else:
                result = await run_check(spec, on_thread=lambda thread: self._track(spec.id, thread))
        finally:
            if result is None:  # cancelled: never leave followers waiting on a dead future
                result = CheckResult(spec, FAIL, 0.0, datetime.datetime.now(datetime.UTC), "Check was cancelled", None)
            with self._lock:
                self.runs += 1
                self._cache[spec.id] = (time.monotonic(), result)
                self._inflight.pop(spec.id, None)
                previous = self.last_results.get(spec.id)
                self.last_results[spec.id] = result
            future.set_result(result)
            self._log_transition(previous, result)
            for listener in self.listeners:
                try:
                    listener(result)
                except Exception:  # a metrics problem must never break a health check
                    logger.exception("health result listener failed")

    def _track(self, check_id: str, thread: concurrent.futures.Future[Any]) -> None:
        self._threads[check_id] = (time.monotonic(), thread)

    @staticmethod
    def _log_transition(previous: CheckResult | None, result: CheckResult) -> None:
        if previous is not None and (previous.status, previous.error) == (result.status, result.error):
            return
        if result.status == PASS:
            if previous is not None:
                logger.info("health check %s recovered", result.id, extra={"check": result.id})
            return
        verb = "failed" if result.status == FAIL else "warns"
        if result.detail is None:  # no "(None)" at the end of the line
            logger.warning(
                "health check %s %s: %s",
                result.id,
                verb,
                result.error,
                extra={"check": result.id, "check_status": result.status},
            )
            return
        logger.warning(
            "health check %s %s: %s (%s)",
            result.id,
            verb,
            result.error,
            result.detail,
            extra={"check": result.id, "check_status": result.status},
        )


def runner_of(health: object) -> HealthRunner | None:
    """A runtime's ``health`` part (typed by ``runtime.Health``) as the :class:`HealthRunner` it is.

    Raises:
        TypeError: it is something else.
    """
    if health is not None and not isinstance(health, HealthRunner):
        raise TypeError(f"expected a HealthRunner, got {type(health).__name__}")
    return health
