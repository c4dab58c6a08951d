"""Exemplars that survive prometheus_client's multiprocess mode.

prometheus_client stores exemplars only in memory, so under gunicorn or Celery prefork (multiprocess
files) they are lost. Here each process keeps the newest exemplar per histogram bucket in a dict (one
dict store per observation on the request path) and writes the dict to ``exemplars_<pid>.json`` in the
multiprocess directory at most twice a second, from a short-lived timer thread. At scrape time the
serving process reads every file, keeps the newest exemplar per bucket and attaches it to the bucket
samples that ``MultiProcessCollector`` summed; files of dead processes are read a last time, then
removed.
"""

from __future__ import annotations

import bisect
import contextlib
import glob
import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client.samples import Exemplar, Sample
from prometheus_client.utils import floatToGoString

__all__ = ["ExemplarStore", "MultiProcessExemplarCollector", "read_exemplars"]

logger = logging.getLogger("django_observe.metrics")

PREFIX = "exemplars_"
FLUSH_DELAY = 0.5

# (sample name, sorted label items including "le") -> (trace_id, span_id, value, timestamp)
Key = tuple[str, tuple[tuple[str, str], ...]]


class ExemplarStore:
    """The newest exemplar per bucket of this process, flushed to ``<directory>/exemplars_<pid>.json``.

    Args:
        directory: the multiprocess directory.
        flush_delay: seconds between the first unflushed observation and the write.
    """

    def __init__(self, directory: str, flush_delay: float = FLUSH_DELAY):
        self.directory = directory
        self.flush_delay = flush_delay
        self._data: dict[tuple[str, tuple[str, ...], int], tuple[str, str, float, float]] = {}
        self._labelnames: dict[str, tuple[str, ...]] = {}
        self._bounds: dict[str, tuple[str, ...]] = {}
        self._uppers: dict[str, tuple[float, ...]] = {}
        self._pending = False
        self._lock = threading.Lock()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        # A forked child starts with no exemplars of its own and no timer thread.
        self._data = {}
        self._pending = False
        self._lock = threading.Lock()

    def declare(self, name: str, labelnames: Sequence[str], upper_bounds: Sequence[float]) -> None:
        """Register a histogram (``name`` without ``_bucket``) and its bucket bounds (``+Inf`` last)."""
        self._labelnames[name] = tuple(labelnames)
        self._uppers[name] = tuple(upper_bounds)
        self._bounds[name] = tuple(floatToGoString(b) for b in upper_bounds)

    def record(self, name: str, labelvalues: tuple[str, ...], value: float, trace_id: str, span_id: str) -> None:
        """Keep ``trace_id``/``span_id`` as the exemplar of the bucket ``value`` falls in."""
        index = bisect.bisect_left(self._uppers[name], value)
        self._data[(name, labelvalues, index)] = (trace_id, span_id, value, time.time())
        if not self._pending:
            self._pending = True
            timer = threading.Timer(self.flush_delay, self.flush)
            timer.daemon = True
            timer.start()

    def flush(self) -> None:
        """Write this process's exemplars (atomically: temp file, then rename)."""
        with self._lock:
            self._pending = False
            entries = [
                [f"{name}_bucket", dict(zip(self._labelnames[name], values, strict=True)), self._bounds[name][i], *ex]
                for (name, values, i), ex in list(self._data.items())
            ]
            pid = os.getpid()
            path = os.path.join(self.directory, f"{PREFIX}{pid}.json")
            tmp = f"{path}.{threading.get_ident()}.tmp"
            try:
                with open(tmp, "w", encoding="utf-8") as fh:
                    json.dump(entries, fh, separators=(",", ":"))
                os.replace(tmp, path)
            except OSError as exc:  # the directory went away (group restarted): nothing to keep
                logger.debug("exemplars not written: %s", exc)
                with contextlib.suppress(OSError):
                    os.unlink(tmp)


def read_exemplars(directory: str, alive: Any) -> dict[Key, tuple[str, str, float, float]]:
    """The newest exemplar per bucket over every process's file; removes files of dead processes."""
    newest: dict[Key, tuple[str, str, float, float]] = {}
    for path in glob.glob(os.path.join(directory, f"{PREFIX}*.json")):
        pid = os.path.basename(path)[len(PREFIX) : -len(".json")]
        try:
            with open(path, encoding="utf-8") as fh:
                entries = json.load(fh)
        except (OSError, ValueError):
            continue
        for sample_name, labels, le, trace_id, span_id, value, ts in entries:
            key = (sample_name, tuple(sorted({**labels, "le": le}.items())))
            current = newest.get(key)
            if current is None or ts > current[3]:
                newest[key] = (trace_id, span_id, value, ts)
        if pid.isdigit() and not alive(int(pid)):
            with contextlib.suppress(OSError):
                os.unlink(path)
    return newest


class MultiProcessExemplarCollector:
    """prometheus_client's ``MultiProcessCollector`` with the stored exemplars attached to bucket samples."""

    def __init__(self, directory: str, alive: Any, declared: Iterable[tuple[str, str, str, str]] = ()):
        from prometheus_client import multiprocess

        self.directory = directory
        self.alive = alive
        self.declared = tuple(declared)  # families announced even without samples (families.announce)
        self._collector = multiprocess.MultiProcessCollector(None, directory)

    def collect(self) -> Iterable[Any]:
        from .families import announce

        yield from announce(self._with_exemplars(), self.declared)

    def _with_exemplars(self) -> Iterable[Any]:
        from .storage import reading

        exemplars = read_exemplars(self.directory, self.alive)
        # Listed and read under the readers' lock: a compaction cannot swap a merged file in between
        # (storage.compact), which counted a dead process twice.
        with reading(self.directory):
            files = sorted(glob.glob(os.path.join(self.directory, "*.db")))
            metrics = list(self._collector.merge(files, accumulate=True))
        for metric in metrics:
            if exemplars and metric.type == "histogram":
                metric.samples = [self._attach(sample, exemplars) for sample in metric.samples]
            yield metric

    @staticmethod
    def _attach(sample: Sample, exemplars: dict[Key, tuple[str, str, float, float]]) -> Sample:
        if not sample.name.endswith("_bucket"):
            return sample
        found = exemplars.get((sample.name, tuple(sorted(sample.labels.items()))))
        if found is None:
            return sample
        trace_id, span_id, value, ts = found
        return sample._replace(exemplar=Exemplar({"trace_id": trace_id, "span_id": span_id}, value, ts))
