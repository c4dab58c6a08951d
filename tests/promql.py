"""Pull the metric names out of PromQL expressions (dashboards, alert and recording rules)."""

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
# Exposed only with PostgreSQL (server side) and Django's psycopg pool: the SQLite run of the Prometheus test
# cannot show them; tests/integration/test_infra_metrics_e2e.py checks them against PostgreSQL with a pool.
POSTGRES_POOL_NAMES = frozenset(
    {
        "db_client_connection_count",
        "db_client_connection_max",
        "db_client_connection_pending_requests",
        "db_server_connections",
        "db_server_database_connections",
        "db_server_connections_max",
        "db_server_connections_usage_ratio",
    }
)

# Exposed only by the ``celery beat`` process, which the Prometheus test does not run;
# tests/integration/test_celery_liveness_e2e.py scrapes them from a real beat.
BEAT_NAMES = frozenset({"celery_beat_last_run_timestamp_seconds", "celery_beat_entry_interval_seconds"})

# The GenAI client histograms have series only after an LLM call, which the Prometheus test does not make;
# tests/integration/test_llm_trace.py scrapes them after real calls (openai SDK, local server).
GENAI_METRICS = frozenset({"gen_ai_client_token_usage", "gen_ai_client_operation_duration_seconds"})
GENAI_NAMES = frozenset(f"{metric}{suffix}" for metric in GENAI_METRICS for suffix in HISTOGRAM_SUFFIXES) | {
    "gen_ai_client_cost_total"  # the cost counter: series once a priced call was made
}

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"\{[^}]*\}")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_RANGE = re.compile(r"\[[^\]]*\]")
_IDENT = re.compile(r"(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()")  # $name: a dashboard variable


def metric_names(expr: str) -> set[str]:
    """Metric (or recording rule) names an expression reads."""
    for pattern in (_STRING, _MATCHERS, _GROUPING, _RANGE):
        expr = pattern.sub(" ", expr)
    return {name for name in _IDENT.findall(expr) if name not in KEYWORDS and not re.fullmatch(r"[0-9.e+-]+", name)}


def base_name(name: str) -> str:
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def shipped_expressions() -> dict[str, str]:
    """Every PromQL expression shipped in deploy/: location -> expression."""
    found = {}
    rules = yaml.safe_load((ROOT / "deploy/prometheus/rules.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            found[f"rules.yml:{rule.get('alert') or rule.get('record')}"] = rule["expr"]
    for path in sorted((ROOT / "deploy/grafana/dashboards").glob("*.json")):
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                found[f"{path.name}:{panel['title']}:{target['refId']}"] = target["expr"]
    return found


def grouping_labels(expr: str) -> set[str]:
    """Labels an expression groups by (``sum by (a, b)``), without ``le``."""
    found = set()
    for clause in re.findall(r"\bby\s*\(([^)]*)\)", expr):
        found |= {label.strip() for label in clause.split(",") if label.strip()}
    return found - {"le"}


def used_names() -> set[str]:
    """Every metric (or recording rule) name the shipped rules and dashboards read."""
    return {name for expr in shipped_expressions().values() for name in metric_names(expr)}


def recorded_names() -> set[str]:
    rules = yaml.safe_load((ROOT / "deploy/prometheus/rules.yml").read_text())
    return {rule["record"] for group in rules["groups"] for rule in group["rules"] if "record" in rule}
