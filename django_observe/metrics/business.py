"""Business metrics: declare once at import time, record from views and Celery tasks alike.

.. code-block:: python

    from django_observe.metrics import counter, histogram, timed

    TOKENS = counter("llm_tokens", "Tokens used.", ["model", "kind"])
    REPLY = histogram("reply_duration_seconds", "Time to write a reply.", buckets=(0.1, 0.5, 1, 5))

    TOKENS.labels(model="gpt-4o", kind="prompt").inc(12)   # or TOKENS.inc(12, model=..., kind=...)
    with timed(REPLY):
        ...

The prometheus_client metric behind each declaration is created on first use, after django_observe's
``ready()``: ``METRICS_NAMESPACE`` is applied then, and in multiprocess mode (gunicorn workers, Celery prefork)
values go to the shared files, so the exporter shows the sum over processes. The cardinality guard bounds
the series of each metric: label values longer than ``MAX_LABEL_LENGTH`` characters are cut, and once a
metric has ``METRICS_MAX_LABEL_VALUES`` label-value combinations (admitted by any process of the service, see
``cardinality``), further combinations are recorded in one series whose labels are all ``__other__``
(counted in ``metrics_label_overflow_total`` each time).
Before ``ready()`` and with ``METRICS_ENABLED`` off, recording does nothing.
"""

from __future__ import annotations

import functools
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from asgiref.sync import iscoroutinefunction

from ..runtime import current
from .cardinality import encode
from .setup import state_of

__all__ = ["Counter", "Gauge", "Histogram", "counter", "gauge", "histogram", "timed"]

F = TypeVar("F", bound=Callable[..., Any])
_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_RESERVED = {"amount", "value", "le", "quantile"}
_MODES = {"livesum", "liveall", "sum", "max", "min", "mostrecent", "livemax", "livemin", "livemostrecent", "all"}

MAX_LABEL_LENGTH = 128
OTHER = "__other__"  # the marker of ``catalogue.OTHER`` (not imported: it would load prometheus_client too early)

# Declarations, made at import time before any runtime exists (like prometheus_client's REGISTRY): the
# table only keeps one name from being declared twice with different shapes. Values live in the runtime.
_declared: dict[str, BusinessMetric] = {}
_lock = threading.Lock()


class _NoOp:
    """Stands in for a metric child while metrics are off (or not configured yet)."""

    def inc(self, amount: float = 1) -> None:
        pass

    def dec(self, amount: float = 1) -> None:
        pass

    def set(self, value: float) -> None:
        pass

    def observe(self, amount: float) -> None:
        pass


_NOOP = _NoOp()


class BusinessMetric:
    """A declared metric; the prometheus_client object is created on first use (see the module docstring)."""

    kind = ""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = (), **options: Any):
        self.name, self.documentation, self.labelnames = name, documentation, tuple(labelnames)
        self.options = options
        self._metric: Any = None
        self._state: Any = None  # the MetricsState the metric was created for
        self._admissions: Any = None  # cardinality.Admissions: the metric's series budget, shared by processes
        self._overflow: Any = None
        self._children: dict[tuple[str, ...], Any] = {}

    def _resolve(self) -> Any:
        runtime = current()
        metrics = runtime.metrics if runtime is not None else None
        if metrics is None:
            return None
        if self._state is metrics:
            return self._metric
        with _lock:
            state = state_of(metrics)
            if state is not None and self._state is not state:  # first use, or the runtime was rebuilt
                catalogue = state.catalogue
                self._admissions = catalogue.admissions(self.name)
                self._overflow = catalogue.label_overflow.labels(self.name, ",".join(self.labelnames))
                self._metric = self._create(catalogue.namespace, state.registry)
                state.owned.append(self._metric)
                self._children = {}
                self._state = state
        return self._metric

    def _create(self, namespace: str, registry: Any) -> Any:
        raise NotImplementedError

    def labels(self, *values: Any, **labels: Any) -> Any:
        """The child for these label values (positional or by name), folded by the cardinality guard."""
        metric = self._resolve()
        if metric is None:
            return _NOOP
        if labels:
            if values:
                raise ValueError("pass label values either positionally or by name, not both")
            try:
                values = tuple(labels.pop(name) for name in self.labelnames)
            except KeyError as exc:
                raise ValueError(f"{self.name}: missing label {exc.args[0]!r}") from None
            if labels:
                raise ValueError(f"{self.name}: unknown labels {sorted(labels)}")
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name} takes the labels {list(self.labelnames)}")
        key = tuple(str(v)[:MAX_LABEL_LENGTH] for v in values)
        child = self._children.get(key)
        if child is None:
            with _lock:
                child = self._children.get(key)
                if child is None:
                    if key and not self._admissions.admit(encode(key)):
                        key = (OTHER,) * len(key)
                        self._overflow.inc()  # on every use: the folded key is not cached below
                        child = self._children.get(key)
                        if child is None:
                            child = self._children[key] = metric.labels(*key)
                        return child
                    child = metric.labels(*key) if key else metric
                    self._children[key] = child
        return child

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {list(self.labelnames)}>"


class Counter(BusinessMetric):
    kind = "counter"

    def _create(self, namespace: str, registry: Any) -> Any:
        from prometheus_client import Counter as PromCounter

        return PromCounter(self.name, self.documentation, self.labelnames, namespace=namespace, registry=registry)

    def inc(self, amount: float = 1, **labels: Any) -> None:
        """Add ``amount`` (>= 0) to the series of ``labels``."""
        self.labels(**labels).inc(amount)


class Gauge(BusinessMetric):
    kind = "gauge"

    def _create(self, namespace: str, registry: Any) -> Any:
        from prometheus_client import Gauge as PromGauge

        mode = self.options.get("multiprocess_mode", "livesum")
        return PromGauge(
            self.name,
            self.documentation,
            self.labelnames,
            namespace=namespace,
            multiprocess_mode=mode,
            registry=registry,
        )

    def set(self, value: float, **labels: Any) -> None:
        self.labels(**labels).set(value)

    def inc(self, amount: float = 1, **labels: Any) -> None:
        self.labels(**labels).inc(amount)

    def dec(self, amount: float = 1, **labels: Any) -> None:
        self.labels(**labels).dec(amount)


class Histogram(BusinessMetric):
    kind = "histogram"

    def _create(self, namespace: str, registry: Any) -> Any:
        from prometheus_client import Histogram as PromHistogram

        return PromHistogram(
            self.name,
            self.documentation,
            self.labelnames,
            namespace=namespace,
            buckets=self.options["buckets"],
            registry=registry,
        )

    def observe(self, value: float, **labels: Any) -> None:
        self.labels(**labels).observe(value)

    def time(self, **labels: Any) -> timed:
        """``timed(self, **labels)``: a decorator or context manager."""
        return timed(self, **labels)


def _declare(cls: type[BusinessMetric], name: str, documentation: str, labelnames: Sequence[str], **options: Any):
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name.startswith("__"):
        raise ValueError(f"metric name {name!r} must be a Prometheus name (letters, digits, underscores)")
    if not documentation:
        raise ValueError(f"metric {name!r} needs a help text")
    if isinstance(labelnames, str):
        raise TypeError(f"labels of {name!r} must be a list of names, not a string")
    for label in labelnames:
        if not _NAME.fullmatch(label) or label.startswith("__") or label in _RESERVED:
            raise ValueError(f"label {label!r} of {name!r} is not allowed (reserved: {sorted(_RESERVED)})")
    with _lock:
        existing = _declared.get(name)
        if existing is not None:
            if type(existing) is cls and existing.labelnames == tuple(labelnames) and existing.options == options:
                return existing  # the module was imported twice (e.g. under two names)
            raise ValueError(f"metric {name!r} is already declared as {existing!r}")
        metric = _declared[name] = cls(name, documentation, labelnames, **options)
        return metric


def counter(name: str, documentation: str, labels: Sequence[str] = ()) -> Counter:
    """Declare a counter; exposed as ``<namespace>_<name>_total`` (a trailing ``_total`` in ``name`` is dropped).

    Args:
        name: Prometheus name without the namespace.
        documentation: the help text.
        labels: label names; values are folded into ``__other__`` past ``METRICS_MAX_LABEL_VALUES``.

    Raises:
        ValueError: a bad name or label, or ``name`` declared before with another type or labels.
    """
    if name.endswith("_total"):
        name = name[: -len("_total")]
    return _declare(Counter, name, documentation, labels)


def gauge(name: str, documentation: str, labels: Sequence[str] = (), multiprocess_mode: str = "livesum") -> Gauge:
    """Declare a gauge.

    Args:
        multiprocess_mode: how processes combine (prometheus_client's modes): ``livesum`` (default: sum over live
            processes, for in-flight counts), ``mostrecent`` (the last value set anywhere), ``max``, ``min``, ...
    """
    if multiprocess_mode not in _MODES:
        raise ValueError(f"multiprocess_mode must be one of {sorted(_MODES)}")
    return _declare(Gauge, name, documentation, labels, multiprocess_mode=multiprocess_mode)


DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)


def histogram(
    name: str, documentation: str, labels: Sequence[str] = (), buckets: Sequence[float] = DEFAULT_BUCKETS
) -> Histogram:
    """Declare a histogram (seconds, bytes, tokens...); ``buckets`` are increasing upper bounds."""
    bounds = tuple(float(b) for b in buckets)
    if not bounds or any(a >= b for a, b in zip(bounds, bounds[1:], strict=False)):
        raise ValueError(f"buckets of {name!r} must be increasing numbers")
    return _declare(Histogram, name, documentation, labels, buckets=bounds)


class timed:  # noqa: N801 - used like a function
    """Observe the duration of a block or a call (sync or async) in seconds, also when it raises.

    >>> with timed(REPLY, model="gpt-4o"): ...
    >>> @timed(REPLY, model="gpt-4o")
    ... def reply(): ...
    """

    __slots__ = ("_start", "histogram", "labels")

    def __init__(self, histogram: Histogram, **labels: Any):
        if not isinstance(histogram, Histogram):
            raise TypeError("timed() takes a histogram declared with django_observe.metrics.histogram()")
        self.histogram, self.labels = histogram, labels
        self._start: list[float] = []

    def __enter__(self) -> timed:
        self._start.append(time.perf_counter())
        return self

    def __exit__(self, *exc: Any) -> None:
        self.histogram.observe(time.perf_counter() - self._start.pop(), **self.labels)

    def __call__(self, func: F) -> F:
        histogram, labels = self.histogram, self.labels
        if iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                start = time.perf_counter()
                try:
                    return await func(*args, **kwargs)
                finally:
                    histogram.observe(time.perf_counter() - start, **labels)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                histogram.observe(time.perf_counter() - start, **labels)

        return wrapper  # type: ignore[return-value]
