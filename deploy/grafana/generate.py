"""Writes the Grafana dashboards in dashboards/ (run: python deploy/grafana/generate.py).

The JSON files are committed; tests check every metric they query against what the app exposes.
"""

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent


def panel(title, exprs, x, y, unit="short", w=12, h=8, kind="timeseries", exemplar=False):
    targets = [
        {
            "refId": chr(65 + i),
            "expr": expr,
            "legendFormat": legend,
            "exemplar": exemplar,
            "datasource": {"type": "prometheus", "uid": "prometheus"},
        }
        for i, (expr, legend) in enumerate(exprs)
    ]
    return {
        "type": kind,
        "title": title,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "datasource": {"type": "prometheus", "uid": "prometheus"},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": targets,
    }


def textbox(name, label, default):
    """A dashboard variable the user types (a budget the queries compare against)."""
    option = {"selected": True, "text": default, "value": default}
    return {"type": "textbox", "name": name, "label": label, "query": default, "current": option, "options": [option]}


def dashboard(uid, title, panels, variables=()):
    for i, p in enumerate(panels, start=1):
        p["id"] = i
    return {
        "uid": uid,
        "title": title,
        "tags": ["django-observe"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": list(variables)},
        "panels": panels,
    }


def quantiles(metric, by):
    return [
        (f"histogram_quantile({q}, sum by (le, {by}) (rate({metric}_bucket[5m])))", f"p{int(q * 100)} {{{{{by}}}}}")
        for q in (0.5, 0.95, 0.99)
    ]


API = dashboard(
    "django-observe-api",
    "API overview",
    [
        panel(
            "Request rate by route",
            [("sum by (route) (rate(http_server_request_duration_seconds_count[5m]))", "{{route}}")],
            0,
            0,
            "reqps",
        ),
        panel(
            "5xx error ratio",
            [
                (
                    'sum(rate(http_server_request_duration_seconds_count{status_code=~"5.."}[5m]))'
                    " / sum(rate(http_server_request_duration_seconds_count[5m]))",
                    "5xx",
                )
            ],
            12,
            0,
            "percentunit",
        ),
        panel(
            "Latency p50 / p95 / p99 by route (click an exemplar for its trace)",
            quantiles("http_server_request_duration_seconds", "route"),
            0,
            8,
            "s",
            w=24,
            exemplar=True,
        ),
        panel(
            "Average authorized API latency (seed)",
            [
                (
                    "rate(authorized_invoke_duration_seconds_sum[5m])"
                    " / rate(authorized_invoke_duration_seconds_count[5m])",
                    "{{route}}",
                )
            ],
            0,
            16,
            "s",
        ),
        panel(
            "p95 authorized API latency (seed)",
            [("histogram_quantile(0.95, sum by (le) (rate(authorized_invoke_duration_seconds_bucket[5m])))", "p95")],
            12,
            16,
            "s",
        ),
        panel(
            "Authorization overhead % (seed)",
            [
                (
                    "sum(rate(authorization_duration_seconds_sum[5m]))"
                    " / sum(rate(authorized_invoke_duration_seconds_sum[5m]))"
                    " * 100",
                    "overhead",
                )
            ],
            0,
            24,
            "percent",
        ),
        panel("Active requests", [("sum(http_server_active_requests)", "active")], 12, 24),
        panel(
            "Exceptions by type",
            [("sum by (exception_type) (rate(http_server_exceptions_total[5m]))", "{{exception_type}}")],
            0,
            32,
            "ops",
            w=24,
        ),
        panel(
            "SQL statements per request, p95 by route",
            [
                (
                    "histogram_quantile(0.95, sum by (route, le) (rate(http_server_request_db_queries_bucket[5m])))",
                    "{{route}}",
                )
            ],
            0,
            40,
        ),
        panel(
            "N+1 requests / s by route (one statement repeated past DB_REPEATED_QUERY_THRESHOLD)",
            [("sum by (route) (rate(http_server_repeated_queries_total[5m]))", "{{route}}")],
            12,
            40,
            "ops",
        ),
        # LLM calls (django_observe.llm_call): the GenAI semantic conventions' client metrics.
        panel(
            "LLM tokens / s by model and token type",
            [
                (
                    "sum by (gen_ai_request_model, gen_ai_token_type) (rate(gen_ai_client_token_usage_sum[5m]))",
                    "{{gen_ai_request_model}} {{gen_ai_token_type}}",
                )
            ],
            0,
            48,
        ),
        panel(
            "LLM tokens per call p95 by model and token type",
            [
                (
                    "histogram_quantile(0.95, sum by (le, gen_ai_request_model, gen_ai_token_type)"
                    " (rate(gen_ai_client_token_usage_bucket[5m])))",
                    "{{gen_ai_request_model}} {{gen_ai_token_type}}",
                )
            ],
            12,
            48,
        ),
        panel(
            "LLM call duration p50 / p95 / p99 by model",
            quantiles("gen_ai_client_operation_duration_seconds", "gen_ai_request_model"),
            0,
            56,
            "s",
        ),
        panel(
            "LLM calls / s by model and error type (empty: success)",
            [
                (
                    "sum by (gen_ai_request_model, error_type)"
                    " (rate(gen_ai_client_operation_duration_seconds_count[5m]))",
                    "{{gen_ai_request_model}} {{error_type}}",
                )
            ],
            12,
            56,
            "ops",
        ),
        # LLM spend and tokens against the budgets (LLM_DAILY_BUDGET, LLM_DAILY_TOKEN_BUDGET: type them into the
        # dashboard's variables), in LLM_CURRENCY; days are the last 24 hours, as the budget alerts count them.
        panel(
            "LLM spend, last 24 h, vs the daily budget (LLM_CURRENCY)",
            [
                ("sum(increase(gen_ai_client_cost_total[1d]))", "spent, last 24 h"),
                ("sum(rate(gen_ai_client_cost_total[1h])) * 86400", "24 h at the last hour's rate"),
                # the budget, drawn where there is spend (a query of a metric, as every shipped one is)
                ("sum(increase(gen_ai_client_cost_total[1d])) * 0 + $llm_daily_budget", "daily budget"),
            ],
            0,
            64,
        ),
        panel(
            "LLM spend / h by model and cost type (LLM_CURRENCY)",
            [
                (
                    "sum by (gen_ai_request_model, gen_ai_token_type) (increase(gen_ai_client_cost_total[1h]))",
                    "{{gen_ai_request_model}} {{gen_ai_token_type}}",
                )
            ],
            12,
            64,
        ),
        panel(
            "LLM tokens (input + output), last 24 h, vs the daily token budget",
            [
                (
                    'sum(increase(gen_ai_client_token_usage_sum{gen_ai_token_type=~"input|output"}[1d]))',
                    "tokens, last 24 h",
                ),
                (
                    'sum(increase(gen_ai_client_token_usage_sum{gen_ai_token_type=~"input|output"}[1d])) * 0'
                    " + $llm_daily_token_budget",
                    "daily token budget",
                ),
            ],
            0,
            72,
        ),
        panel(
            "LLM input served from the provider's cache",
            [
                (
                    'sum(rate(gen_ai_client_token_usage_sum{gen_ai_token_type="cache_read"}[1h]))'
                    ' / sum(rate(gen_ai_client_token_usage_sum{gen_ai_token_type="input"}[1h]))',
                    "cached share",
                )
            ],
            12,
            72,
            "percentunit",
        ),
    ],
    variables=[
        textbox("llm_daily_budget", "Daily LLM budget (LLM_DAILY_BUDGET)", "50"),
        textbox("llm_daily_token_budget", "Daily token budget (LLM_DAILY_TOKEN_BUDGET)", "5000000"),
    ],
)

CELERY = dashboard(
    "django-observe-celery",
    "Celery workers",
    [
        panel(
            "Tasks succeeded / s by task",
            [('sum by (task) (rate(celery_tasks_total{state="succeeded"}[5m]))', "{{task}}")],
            0,
            0,
            "ops",
        ),
        panel(
            "Tasks failed / s by task",
            [('sum by (task) (rate(celery_tasks_total{state="failed"}[5m]))', "{{task}}")],
            12,
            0,
            "ops",
        ),
        panel(
            "Task duration p50 / p95 / p99", quantiles("celery_task_duration_seconds", "task"), 0, 8, "s", exemplar=True
        ),
        panel(
            "Queue wait p95 (publish to start)",
            [
                (
                    "histogram_quantile(0.95, sum by (le, queue) (rate(celery_task_queue_wait_seconds_bucket[5m])))",
                    "{{queue}}",
                )
            ],
            12,
            8,
            "s",
        ),
        panel("Queue length", [("sum by (queue) (celery_queue_length)", "{{queue}}")], 0, 16),
        panel("Workers alive", [("max(celery_workers)", "workers")], 12, 16, kind="stat"),
        panel(
            "Tasks published / s",
            [("sum by (task) (rate(celery_tasks_published_total[5m]))", "{{task}}")],
            0,
            24,
            "ops",
            w=24,
        ),
    ],
)

INFRA = dashboard(
    "django-observe-infrastructure",
    "Infrastructure",
    [
        panel(
            "Process CPU (cores)",
            [("sum by (job, instance) (rate(process_cpu_seconds_total[5m]))", "{{job}} {{instance}}")],
            0,
            0,
        ),
        panel(
            "Process resident memory",
            [("sum by (job, instance) (process_resident_memory_bytes)", "{{job}} {{instance}}")],
            12,
            0,
            "bytes",
        ),
        panel(
            "Database operation p95 by alias",
            [
                (
                    "histogram_quantile(0.95, sum by (le, alias)"
                    " (rate(db_client_operation_duration_seconds_bucket[5m])))",
                    "{{alias}}",
                )
            ],
            0,
            8,
            "s",
        ),
        panel(
            "Database operations / s",
            [("sum by (alias) (rate(db_client_operation_duration_seconds_count[5m]))", "{{alias}}")],
            12,
            8,
            "ops",
        ),
        panel(
            "Cache operations / s by result",
            [("sum by (cache, operation, result) (rate(cache_operations_total[5m]))", "{{cache}} {{operation}}")],
            0,
            16,
            "ops",
        ),
        panel(
            "Cache hit ratio (get)",
            [
                (
                    'sum by (cache) (rate(cache_operations_total{operation="get",result="hit"}[5m]))'
                    ' / sum by (cache) (rate(cache_operations_total{operation="get"}[5m]))',
                    "{{cache}}",
                )
            ],
            12,
            16,
            "percentunit",
        ),
        panel(
            "Health check status (1 pass, 0 fail)",
            [("min by (check) (health_check_status)", "{{check}}")],
            0,
            24,
            kind="stat",
        ),
        panel("Health check duration", [("max by (check) (health_check_duration_seconds)", "{{check}}")], 12, 24, "s"),
        # The seed's infrastructure table (docs/key-metrics.md), from the scrape-time collectors.
        panel(
            "Database connections: pool used / size, server use of max_connections",
            [
                (
                    'sum by (alias) (db_client_connection_count{state="used"})'
                    " / sum by (alias) (db_client_connection_max)",
                    "pool {{alias}}",
                ),
                ("max by (alias) (db_server_connections_usage_ratio)", "server {{alias}}"),
            ],
            0,
            32,
            "percentunit",
        ),
        panel(
            "Redis memory used / maxmemory",
            [("max by (redis) (redis_memory_used_bytes) / max by (redis) (redis_memory_max_bytes > 0)", "{{redis}}")],
            12,
            32,
            "percentunit",
        ),
        panel(
            "Disk used",
            [("max by (instance, path) (disk_used_bytes / disk_total_bytes)", "{{instance}} {{path}}")],
            0,
            40,
            "percentunit",
        ),
        panel(
            "Host memory used",
            [("max by (instance) (1 - host_memory_available_bytes / host_memory_total_bytes)", "{{instance}}")],
            12,
            40,
            "percentunit",
        ),
        panel("Active users (sliding window)", [("max by (job) (active_users)", "{{job}}")], 0, 48, kind="stat"),
        panel(
            "Collector errors / s",
            [("sum by (collector) (rate(metrics_collector_errors_total[5m]))", "{{collector}}")],
            12,
            48,
            "ops",
        ),
        panel(
            "Unapplied migrations by database (alert: MigrationsUnapplied)",
            [("max by (job, alias) (db_migrations_unapplied)", "{{job}} {{alias}}")],
            0,
            56,
            kind="stat",
        ),
        panel(
            "Model inserts, updates and deletes / s",
            [
                (
                    "sum by (model, operation) (rate(db_model_operations_total[5m]))",
                    "{{model}} {{operation}}",
                )
            ],
            12,
            56,
            "ops",
        ),
    ],
)

if __name__ == "__main__":
    for name, board in (("api", API), ("celery", CELERY), ("infrastructure", INFRA)):
        (HERE / "dashboards" / f"{name}.json").write_text(json.dumps(board, indent=2) + "\n")
