"""Prometheus rules: fixed-threshold alerts (with their recording rules) and multi-burn-rate alerts for ``SLOS``.

Pure functions that return plain dicts; :mod:`django_observe.alerting.output` turns them into YAML and
``manage.py observe_rules`` writes them. This module is the one source of the rules:
``deploy/prometheus/rules.yml`` is its output for the default configuration, which a test checks.

Metric names follow the catalogue (:mod:`django_observe.metrics.catalogue`) with ``METRICS_NAMESPACE``
as prefix; ``process_cpu_seconds_total`` comes from prometheus_client's process collector and has none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .budgets import budget_groups
from .promql import format_number, metric, promql_string
from .slo import ALERT_PAIRS, RATE_WINDOWS, AlertPair, Objective, budget_consumed

__all__ = [
    "REQUESTS",
    "SLI_RECORD",
    "alert_name",
    "alert_annotations",
    "format_number",
    "metric",
    "prometheus_rule",
    "promql_string",
    "rule_file",
    "slo_groups",
    "threshold_groups",
]

REQUESTS = "http_server_request_duration_seconds"
SLI_RECORD = "slo:sli_error:ratio_rate{window}"


def _ns(expr: str, namespace: str) -> str:
    return expr.replace("${ns}", f"{namespace}_" if namespace else "")


def _alert(name: str, expr: str, for_: str, severity: str, summary: str, description: str = "") -> dict[str, Any]:
    rule: dict[str, Any] = {"alert": name, "expr": expr, "for": for_, "labels": {"severity": severity}}
    rule["annotations"] = {"summary": summary, **({"description": description} if description else {})}
    return rule


AUTHORIZATION_RECORDS = frozenset(
    {
        "job:authorized_invoke_duration_seconds:avg_rate5m",
        "job:authorized_invoke_duration_seconds:p95_rate5m",
        "job:authorization_overhead:percent_rate5m",
    }
)


def threshold_groups(namespace: str = "", authorization: bool = True) -> list[dict[str, Any]]:
    """The fixed-threshold rules every rule file starts with, whatever ``SLOS`` holds: the recording rules
    (request rate, error ratio and p95 latency, authorization latency and overhead, Celery failure ratio), then
    the critical, warning and infrastructure alerts, each firing when a metric crosses a fixed threshold.

    Args:
        namespace: ``METRICS_NAMESPACE``, prefixed to every catalogue metric.
        authorization: include the seed's authorization recording rules (``authorized_invoke_duration_seconds``,
            ``authorization_duration_seconds``): only a project that authenticates (django.contrib.auth, DRF,
            or ``metrics.authorization``) has those series.
    """
    recording = [
        ("job:http_server_requests:rate5m", "sum by (job) (rate(${ns}http_server_request_duration_seconds_count[5m]))"),
        (
            "job:http_server_errors:ratio_rate5m",
            'sum by (job) (rate(${ns}http_server_request_duration_seconds_count{status_code=~"5.."}[5m]))\n/\n'
            "sum by (job) (rate(${ns}http_server_request_duration_seconds_count[5m]))",
        ),
        (
            "job:http_server_request_duration_seconds:p95_rate5m",
            "histogram_quantile(0.95, sum by (job, le) (rate(${ns}http_server_request_duration_seconds_bucket[5m])))",
        ),
        # The seed's three queries on the authorization histograms.
        (
            "job:authorized_invoke_duration_seconds:avg_rate5m",
            "sum by (job) (rate(${ns}authorized_invoke_duration_seconds_sum[5m]))\n/\n"
            "sum by (job) (rate(${ns}authorized_invoke_duration_seconds_count[5m]))",
        ),
        (
            "job:authorized_invoke_duration_seconds:p95_rate5m",
            "histogram_quantile(0.95, sum by (job, le) (rate(${ns}authorized_invoke_duration_seconds_bucket[5m])))",
        ),
        (
            "job:authorization_overhead:percent_rate5m",
            "sum by (job) (rate(${ns}authorization_duration_seconds_sum[5m]))\n/\n"
            "sum by (job) (rate(${ns}authorized_invoke_duration_seconds_sum[5m]))\n* 100",
        ),
        (
            "job:celery_task_failures:ratio_rate5m",
            'sum by (job) (rate(${ns}celery_tasks_total{state="failed"}[5m]))\n/\n'
            'sum by (job) (rate(${ns}celery_tasks_total{state=~"succeeded|failed"}[5m]))',
        ),
    ]
    if not authorization:
        recording = [(record, expr) for record, expr in recording if record not in AUTHORIZATION_RECORDS]
    critical = [
        # The seed's "health endpoint returns non-200 for > 2 minutes": a critical check failing is /readyz 503.
        _alert(
            "HealthCheckFailing",
            'min by (job, instance, check) (${ns}health_check_status{critical="true"}) == 0',
            "2m",
            "critical",
            "Health check {{ $labels.check }} failing on {{ $labels.instance }}",
            "/readyz answers 503 because the critical check {{ $labels.check }} fails.",
        ),
        _alert(
            "HighErrorRate",
            "job:http_server_errors:ratio_rate5m > 0.05",
            "5m",
            "critical",
            "5xx rate above 5% on {{ $labels.job }}",
            "{{ $value | humanizePercentage }} of requests fail with 5xx.",
        ),
        _alert(
            "DatabaseConnectionFailures",
            'min by (job, instance, check) (${ns}health_check_status{check=~"database(:.*)?"}) == 0',
            "1m",
            "critical",
            "Database {{ $labels.check }} unreachable from {{ $labels.instance }}",
        ),
        _alert(
            "RedisUnreachable",
            'min by (job, instance, check) (${ns}health_check_status{check=~"redis(:.*)?"}) == 0',
            "1m",
            "critical",
            "Redis {{ $labels.check }} unreachable from {{ $labels.instance }}",
        ),
        _alert(
            "CeleryWorkersAbsent",
            "max by (job) (${ns}celery_workers) < 1 or absent(${ns}celery_workers)",
            "5m",
            "critical",
            "No Celery worker alive: background tasks stop processing",
        ),
    ]
    warning = [
        _alert(
            "HighLatencyP95",
            "job:http_server_request_duration_seconds:p95_rate5m > 3",
            "5m",
            "warning",
            "p95 latency above 3 s on {{ $labels.job }}",
        ),
        _alert(
            "CeleryQueueBacklogGrowing",
            "${ns}celery_queue_length > 100 and deriv(${ns}celery_queue_length[10m]) > 0",
            "10m",
            "warning",
            "Celery queue {{ $labels.queue }} backlog growing ({{ $value }} tasks)",
        ),
        _alert(
            "CeleryTaskFailureRate",
            "job:celery_task_failures:ratio_rate5m > 0.05",
            "10m",
            "warning",
            "More than 5% of Celery tasks fail",
        ),
        _alert(
            "CeleryBeatEntryLate",
            # last_over_time keeps the alert up when beat itself is gone (its series would go stale).
            "time() - max by (job, entry) (last_over_time(${ns}celery_beat_last_run_timestamp_seconds[1d]))\n"
            "> max by (job, entry) (last_over_time(${ns}celery_beat_entry_interval_seconds[1d])) * 1.5 + 60",
            "2m",
            "warning",
            "Celery beat entry {{ $labels.entry }} is late: last sent {{ $value | humanizeDuration }} ago",
        ),
        _alert(
            "HighCPU",
            # process_* metrics come from prometheus_client's process collector: never namespaced.
            "sum by (job, instance) (rate(process_cpu_seconds_total[5m])) > 0.8",
            "10m",
            "warning",
            "CPU above 80% for 10 minutes on {{ $labels.instance }}",
        ),
    ]
    # The seed's infrastructure table (docs/key-metrics.md), from the scrape-time collectors.
    infrastructure = [
        _alert(
            "DatabasePoolNearlyExhausted",
            # Pool numbers are per process, summed over a pod's live processes: used vs. the pod's capacity.
            'sum by (job, instance, alias) (${ns}db_client_connection_count{state="used"})\n/\n'
            "sum by (job, instance, alias) (${ns}db_client_connection_max)\n> 0.8",
            "5m",
            "warning",
            "Connection pool {{ $labels.alias }} over 80% used on {{ $labels.instance }}",
        ),
        _alert(
            "DatabaseServerConnectionsHigh",
            "max by (job, alias) (${ns}db_server_connections_usage_ratio) > 0.8",
            "5m",
            "warning",
            "PostgreSQL ({{ $labels.alias }}) uses {{ $value | humanizePercentage }} of max_connections",
        ),
        _alert(
            "RedisMemoryHigh",
            # Only Redis servers with a maxmemory (0 means no limit).
            "max by (redis) (${ns}redis_memory_used_bytes) / max by (redis) (${ns}redis_memory_max_bytes > 0) > 0.75",
            "5m",
            "warning",
            "Redis {{ $labels.redis }} above 75% of maxmemory",
        ),
        _alert(
            "DiskUsageHigh",
            "max by (job, instance, path) (${ns}disk_used_bytes / ${ns}disk_total_bytes) > 0.8",
            "10m",
            "warning",
            "Disk holding {{ $labels.path }} over 80% full on {{ $labels.instance }}",
        ),
        _alert(
            "HostMemoryHigh",
            "max by (job, instance) (1 - ${ns}host_memory_available_bytes / ${ns}host_memory_total_bytes) > 0.85",
            "5m",
            "warning",
            "Memory use above 85% on {{ $labels.instance }}",
        ),
        _alert(
            "MigrationsUnapplied",
            # Read once per scrape by the serving process (cached a minute): max, not sum, over processes.
            "max by (job, alias) (${ns}db_migrations_unapplied) > 0",
            "10m",
            "warning",
            "{{ $value }} migrations not applied to database {{ $labels.alias }} ({{ $labels.job }})",
            "The code running expects migrations the database does not have: run `manage.py migrate` "
            "(a deploy that skipped it, or a failed migration job).",
        ),
    ]
    for rule in critical + warning + infrastructure:
        rule["expr"] = _ns(rule["expr"], namespace)
    return [
        {
            "name": "django-observe-recording",
            "rules": [{"record": name, "expr": _ns(expr, namespace)} for name, expr in recording],
        },
        {"name": "django-observe-critical", "rules": critical},
        {"name": "django-observe-warning", "rules": warning},
        {"name": "django-observe-infrastructure", "rules": infrastructure},
    ]


# --- SLOs


def _le_matcher(seconds: float) -> str:
    """Matcher of the bucket whose upper bound is ``seconds``.

    prometheus_client writes ``le="1.0"``; Prometheus 2 keeps the text as scraped (protobuf scrapes give
    ``"1"``) and Prometheus 3 normalises to ``"1.0"``: whole numbers match both spellings.
    """
    from prometheus_client.utils import floatToGoString

    text = floatToGoString(seconds)
    if float(seconds).is_integer():
        whole = str(int(seconds))
        return f'le=~"{whole}|{whole}\\\\.0"'
    return f"le={promql_string(text)}"


def _selector(objective: Objective, *extra: str) -> str:
    matchers = ([f"route=~{promql_string(objective.routes)}"] if objective.routes else []) + list(extra)
    return "{" + ",".join(matchers) + "}" if matchers else ""


def sli_error_expr(objective: Objective, namespace: str, window: str) -> str:
    """PromQL for the share of bad requests of ``objective`` over ``window``, per job.

    Availability: 5xx responses over all responses. Latency: responses slower than ``threshold_ms``
    (all requests minus the bucket ``le=<threshold>``) over all responses.
    """
    count = metric(namespace, f"{REQUESTS}_count")
    total = f"sum by (job) (rate({count}{_selector(objective)}[{window}]))"
    if objective.kind == "availability":
        errors = _selector(objective, 'status_code=~"5.."')
        bad = f"sum by (job) (rate({count}{errors}[{window}]))"
        return f"{bad}\n/\n{total}"
    bucket = metric(namespace, f"{REQUESTS}_bucket")
    assert objective.threshold_seconds is not None  # parse_objectives requires it for latency objectives
    fast = _selector(objective, _le_matcher(objective.threshold_seconds))
    good = f"sum by (job) (rate({bucket}{fast}[{window}]))"
    return f"1 - (\n  {good}\n  /\n  {total}\n)"


def camel(name: str) -> str:
    """``"api-availability"`` -> ``"ApiAvailability"``."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("-"))


def alert_name(objective: Objective) -> str:
    """The alert of ``objective``: one name, ``severity`` page (fast burn) or ticket (slow burn)."""
    return f"{camel(objective.name)}ErrorBudgetBurn"


def burn_alert_expr(objective: Objective, pairs: Sequence[AlertPair]) -> str:
    """Both windows of a pair above the pair's burn rate times the budget, for any of ``pairs``."""
    selector = f"{{slo={promql_string(objective.name)}}}"
    budget = format_number(objective.budget)
    clauses = []
    for pair in pairs:
        factor = format_number(pair.factor)
        long = f"{SLI_RECORD.format(window=pair.long)}{selector} > ({factor} * {budget})"
        short = f"{SLI_RECORD.format(window=pair.short)}{selector} > ({factor} * {budget})"
        clauses.append(f"(\n  {long}\nand\n  {short}\n)")
    return "\nor\n".join(clauses)


def _describe(objective: Objective) -> str:
    where = f"requests to routes matching {objective.routes}" if objective.routes else "requests"
    if objective.kind == "availability":
        return f"{format_number(objective.objective)}% of {where} succeed (no 5xx) over {objective.window}"
    assert objective.threshold_ms is not None  # parse_objectives requires it for latency objectives
    within = f"{format_number(objective.threshold_ms)} ms"
    return f"{format_number(objective.objective)}% of {where} answer within {within} over {objective.window}"


def alert_annotations(objective: Objective, severity: str) -> dict[str, str]:
    pairs = [p for p in ALERT_PAIRS if p.severity == severity]
    speed = "fast" if severity == "page" else "slowly"
    burns = ", or ".join(
        f"{format_number(p.factor)}x over both {p.long} and {p.short} "
        f"({format_number(round(100 * budget_consumed(p, objective.window), 2))}% of the budget in {p.long})"
        for p in pairs
    )
    return {
        "summary": f"SLO {objective.name} is burning its error budget {speed} on {{{{ $labels.job }}}}",
        "description": (
            f"Objective: {_describe(objective)}; error budget {format_number(round(100 * objective.budget, 6))}%. "
            f"The share of bad requests exceeds the budget {burns}."
        ),
    }


def slo_group(objective: Objective, namespace: str = "") -> dict[str, Any]:
    """One rule group per objective: its error ratio over every window, then its page and ticket alerts.

    Recording and alerting share a group so each evaluation alerts on the ratios it just recorded.
    """
    labels = {"slo": objective.name}
    rules: list[dict[str, Any]] = [
        {"record": SLI_RECORD.format(window=w), "expr": sli_error_expr(objective, namespace, w), "labels": labels}
        for w in RATE_WINDOWS
    ]
    for severity in ("page", "ticket"):
        rules.append(
            {
                "alert": alert_name(objective),
                "expr": burn_alert_expr(objective, [p for p in ALERT_PAIRS if p.severity == severity]),
                "labels": {"severity": severity, "slo": objective.name},
                "annotations": alert_annotations(objective, severity),
            }
        )
    return {"name": f"django-observe-slo-{objective.name}", "rules": rules}


def slo_groups(objectives: Sequence[Objective], namespace: str = "") -> list[dict[str, Any]]:
    """Rule groups of every objective, in the order of ``SLOS``."""
    return [slo_group(o, namespace) for o in objectives]


def rule_file(config: Any, authorization: bool = True) -> dict[str, Any]:
    """The Prometheus rule file (``groups:``) for an :class:`~django_observe.conf.ObserveConfig`
    (``authorization``: see :func:`threshold_groups`)."""
    ns = config.metrics_namespace
    return {"groups": threshold_groups(ns, authorization) + slo_groups(config.slos, ns) + budget_groups(config)}


def prometheus_rule(
    config: Any, name: str, labels: Mapping[str, str], namespace: str | None = None, authorization: bool = True
) -> dict[str, Any]:
    """The same groups as a Kubernetes ``monitoring.coreos.com/v1`` ``PrometheusRule``.

    Args:
        config: the ObserveConfig.
        name: ``metadata.name`` (a DNS subdomain name).
        labels: ``metadata.labels``, e.g. what the Prometheus resource's ``ruleSelector`` matches.
        namespace: ``metadata.namespace`` (omitted when ``None``).
    """
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    metadata["labels"] = dict(labels)
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": metadata,
        "spec": rule_file(config, authorization),
    }
