"""Writing batches to the console's tables and reading them back for the pages.

Aggregates are upserted additively (``INSERT ... ON CONFLICT DO UPDATE SET count = count + excluded.count``
on PostgreSQL and SQLite, ``ON DUPLICATE KEY UPDATE`` on MySQL and MariaDB), so every process of every host
adds to the same rows. Each minute cell of a batch is folded into one bucket per period before writing, and a
bucket already outside its period's window is not written at all.
"""

from __future__ import annotations

import datetime
import time
from typing import Any

from django.db import connections, transaction
from django.db.models import Max, Sum

from .models import Aggregate, ExceptionOccurrence, FailedJob, KeptRequest, Value, WrittenBatch
from .recorder import BINS, HOST, PERIODS, Batch, Cell, key_hash, percentile

__all__ = [
    "discard_connection",
    "overflow",
    "release_connection",
    "series",
    "top",
    "trim",
    "write",
]

HIST = tuple(f"h{i}" for i in range(BINS))
_COLUMNS = ("period", "bucket", "type", "key", "key_hash", "count", "total", "peak", "errors", "value", *HIST)
_ENTRY_MODELS: dict[str, Any] = {"request": KeptRequest, "exception": ExceptionOccurrence, "job": FailedJob}


def _when(epoch: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC)


def fold(batch: Batch, now: float) -> dict[tuple[int, int, str, str], Cell]:
    """The batch's minute cells folded into the buckets of every period still inside its window."""
    rows: dict[tuple[int, int, str, str], Cell] = {}
    cells = dict(batch.cells)
    if batch.overflow:
        spill = Cell()
        spill.count = batch.overflow
        cells[("overflow", HOST, int(now // 60))] = spill
    for (kind, key, minute), cell in cells.items():
        start = minute * 60
        for window, size in PERIODS.values():
            bucket = start - start % size
            if bucket + size <= now - window:
                continue
            row = rows.get((size, bucket, kind, key))
            if row is None:
                row = rows[(size, bucket, kind, key)] = Cell()
            row.merge(cell)
    return rows


def _upsert_sql(vendor: str, table: str, quote: Any) -> str:
    columns = ", ".join(quote(c) for c in _COLUMNS)
    marks = ", ".join(["%s"] * len(_COLUMNS))
    added = ("count", "total", "errors", "value", *HIST)
    if vendor == "mysql":
        sets = [f"{quote(c)} = {quote(c)} + VALUES({quote(c)})" for c in added]
        sets.append(f"{quote('peak')} = GREATEST({quote('peak')}, VALUES({quote('peak')}))")
        # Only our own table and column names are formatted in; every value is a parameter.
        return f"INSERT INTO {table} ({columns}) VALUES ({marks}) ON DUPLICATE KEY UPDATE {', '.join(sets)}"  # noqa: S608
    sets = [f"{quote(c)} = {table}.{quote(c)} + excluded.{quote(c)}" for c in added]
    peak = quote("peak")
    sets.append(f"{peak} = CASE WHEN excluded.{peak} > {table}.{peak} THEN excluded.{peak} ELSE {table}.{peak} END")
    conflict = ", ".join(quote(c) for c in ("period", "bucket", "type", "key_hash"))
    return (
        f"INSERT INTO {table} ({columns}) VALUES ({marks}) "  # noqa: S608 - our names; values are parameters
        f"ON CONFLICT ({conflict}) DO UPDATE SET {', '.join(sets)}"
    )


def write(alias: str, batch: Batch, now: float, batch_id: str | None = None) -> bool:
    """Write one batch in one transaction (all of it or nothing); False when ``batch_id`` was written before.

    A retried batch whose first commit went through unanswered (the database died between committing and
    saying so) is recognised by its id and not added twice.

    Raises:
        DatabaseError: the database refused or is unreachable (the caller keeps the batch).
    """
    connection = connections[alias]
    rows = fold(batch, now)
    params = []
    for (size, bucket, kind, key), cell in rows.items():
        hist = cell.hist or [0] * BINS
        params.append(
            (size, bucket, kind, key, key_hash(kind, key), cell.count, cell.total, cell.peak, cell.errors, cell.value)
            + tuple(hist)
        )
    # Rows locked in one order (the unique key's): concurrent flushes from other processes wait for each
    # other instead of deadlocking (PostgreSQL aborts one of two transactions that lock in opposite orders).
    params.sort(key=lambda row: (row[0], row[1], row[2], row[4]))
    with transaction.atomic(using=alias):
        if batch_id is not None:
            if WrittenBatch.objects.using(alias).filter(id=batch_id).exists():
                return False
            WrittenBatch.objects.using(alias).create(id=batch_id, at=_when(now))
        if params:
            sql = _upsert_sql(
                connection.vendor, connection.ops.quote_name(Aggregate._meta.db_table), connection.ops.quote_name
            )
            with connection.cursor() as cursor:
                cursor.executemany(sql, params)
        for table, entries in batch.entries.items():
            model = _ENTRY_MODELS[table]
            objs = []
            for entry in entries:
                fields = dict(entry)
                fields["at"] = _when(fields["at"])
                fields.setdefault("host", HOST)
                fields.setdefault("pid", _pid())
                objs.append(model(**fields))
            model.objects.using(alias).bulk_create(objs)
        if batch.values:
            stamp = _when(now)
            values = [
                Value(type=kind, key=key[:255], data=data, updated=stamp)
                for (kind, key), data in sorted(batch.values.items(), key=lambda item: item[0])
            ]
            Value.objects.using(alias).bulk_create(
                values, update_conflicts=True, unique_fields=["type", "key"], update_fields=["data", "updated"]
            )
    return True


def _pid() -> int:
    import os

    return os.getpid()


def trim(alias: str, now: float, retention_days: int) -> None:
    """Delete buckets outside their period's window, and entries and values older than the retention."""
    keep = now - retention_days * 86400
    with transaction.atomic(using=alias):
        for window, size in PERIODS.values():
            oldest = max(now - window - size, keep)
            Aggregate.objects.using(alias).filter(period=size, bucket__lt=oldest).delete()
        for model in (KeptRequest, ExceptionOccurrence, FailedJob, WrittenBatch):
            model.objects.using(alias).filter(at__lt=_when(keep)).delete()
        Value.objects.using(alias).filter(updated__lt=_when(keep)).delete()


def discard_connection(alias: str) -> None:
    """Close the flush thread's connection after a failure, so the next flush opens a new one."""
    try:
        connections[alias].close()
    except Exception:  # noqa: S110 - already broken: the next flush reconnects
        pass


def release_connection(alias: str) -> None:
    try:
        connections[alias].close_if_unusable_or_obsolete()
    except Exception:  # noqa: S110 - the next flush reconnects
        pass


# --- reading (the pages)


def window(period: str, now: float | None = None) -> tuple[int, int, float]:
    """``(bucket size, first bucket, now)`` of a period name (``1h``, ``6h``, ``24h``, ``7d``)."""
    now = time.time() if now is None else now
    span, size = PERIODS[period]
    first = int(now - span) - int(now - span) % size
    return size, first, now


def _sums() -> dict[str, Any]:
    sums: dict[str, Any] = {
        "n": Sum("count"),
        "ms": Sum("total"),
        "max_ms": Max("peak"),
        "err": Sum("errors"),
        "val": Sum("value"),
    }
    sums.update({f"s{h}": Sum(h) for h in HIST})
    return sums


def _row(raw: dict[str, Any]) -> dict[str, Any]:
    hist = [int(raw.pop(f"s{h}") or 0) for h in HIST]
    count = int(raw.get("n") or 0)
    total = float(raw.get("ms") or 0.0)
    raw.update(
        count=count,
        total=total,
        peak=float(raw.get("max_ms") or 0.0),
        errors=int(raw.get("err") or 0),
        value=float(raw.get("val") or 0.0),
        avg=total / count if count else 0.0,
        hist=hist,
        p50=percentile(hist, 0.5),
        p95=percentile(hist, 0.95),
        p99=percentile(hist, 0.99),
        hash=raw.get("key_hash", ""),
    )
    return raw


def top(
    alias: str, kind: str, period: str, *, order: str = "-ms", limit: int = 10, now: float | None = None
) -> list[dict[str, Any]]:
    """Keys of ``kind`` in the period, summed over its buckets, ``order``-ed (``-ms``, ``-n``, ``-max_ms``...)."""
    size, first, _ = window(period, now)
    rows = (
        Aggregate.objects.using(alias)
        .filter(type=kind, period=size, bucket__gte=first)
        .values("key", "key_hash")
        .annotate(**_sums())
        .order_by(order, "key")[:limit]
    )
    return [_row(dict(r)) for r in rows]


def totals(alias: str, kind: str, period: str, *, key: str | None = None, now: float | None = None) -> dict[str, Any]:
    size, first, _ = window(period, now)
    query = Aggregate.objects.using(alias).filter(type=kind, period=size, bucket__gte=first)
    if key is not None:
        query = query.filter(key_hash=key_hash(kind, key))
    return _row(dict(query.aggregate(**_sums())))


def series(alias: str, kind: str, period: str, *, hashed_key: str, now: float | None = None) -> list[dict[str, Any]]:
    """One row per bucket of the period (empty buckets included, so charts keep their time axis)."""
    size, first, now = window(period, now)
    found = {
        r["bucket"]: r
        for r in Aggregate.objects.using(alias)
        .filter(type=kind, period=size, bucket__gte=first, key_hash=hashed_key)
        .values("bucket", "count", "total", "peak", "errors", "value", *HIST)
    }
    out = []
    for bucket in range(first, int(now) + 1, size):
        raw = found.get(bucket)
        hist = [int(raw[h]) for h in HIST] if raw else [0] * BINS
        count = int(raw["count"]) if raw else 0
        out.append(
            {
                "bucket": bucket,
                "count": count,
                "errors": int(raw["errors"]) if raw else 0,
                "value": float(raw["value"]) if raw else 0.0,
                "avg": float(raw["total"]) / count if raw and count else 0.0,
                "p50": percentile(hist, 0.5),
                "p95": percentile(hist, 0.95),
                "p99": percentile(hist, 0.99),
            }
        )
    return out


def values(alias: str, kind: str) -> list[Value]:
    return list(Value.objects.using(alias).filter(type=kind).order_by("key"))


def overflow(alias: str, period: str, now: float | None = None) -> int:
    return int(totals(alias, "overflow", period, now=now)["count"])


def entries(model: Any, alias: str, since: float, **filters: Any) -> Any:
    return model.objects.using(alias).filter(at__gte=_when(since), **filters)
