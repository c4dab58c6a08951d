"""SLOS: validation, the burn-rate arithmetic and the generated rules (pure functions, no Prometheus)."""

import json
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml

from django_observe import conf
from django_observe.alerting import output, promtool, rules
from django_observe.alerting.slo import (
    ALERT_PAIRS,
    Objective,
    budget_consumed,
    burn_threshold,
    example_route,
)

ROOT = Path(__file__).resolve().parents[2]
AVAILABILITY = {"name": "api-availability", "kind": "availability", "objective": 99.9, "routes": "api/.*"}
LATENCY = {"name": "api-latency", "kind": "latency", "objective": 99, "threshold_ms": 250, "routes": "api/.*"}


def load(slos, **extra):
    settings = types.SimpleNamespace(DEBUG=False, DJANGO_OBSERVE={"SLOS": slos, **extra})
    return conf.load_config(settings, environ={})


def error_of(slos, **extra) -> str:
    with pytest.raises(conf.InvalidConfiguration) as info:
        load(slos, **extra)
    return str(info.value)


# --- validation


def test_default_is_no_objective():
    config = conf.load_config(types.SimpleNamespace(DEBUG=False), environ={})
    assert config.slos == ()


def test_valid_objectives_are_parsed():
    config = load([AVAILABILITY, {**LATENCY, "window": "28d"}])
    assert config.slos == (
        Objective("api-availability", "availability", 99.9, "api/.*", "30d", None),
        Objective("api-latency", "latency", 99.0, "api/.*", "28d", 250.0),
    )
    assert config.sources["slos"] == 'DJANGO_OBSERVE["SLOS"]'


def test_json_list_from_the_environment():
    config = conf.load_config(types.SimpleNamespace(DEBUG=False), environ={"SLOS": json.dumps([AVAILABILITY])})
    assert config.slos[0].name == "api-availability"
    assert config.sources["slos"] == "environment variable SLOS"


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (
            {**AVAILABILITY, "name": "API availability"},
            '"name" must be a slug of lower-case letters, digits and dashes',
        ),
        ({**AVAILABILITY, "kind": "speed"}, '"kind" must be one of "availability", "latency", got \'speed\''),
        ({**AVAILABILITY, "objective": 100}, '"objective" must be a percentage between 0 and 100 (exclusive)'),
        ({**AVAILABILITY, "objective": 0}, '"objective" must be a percentage between 0 and 100 (exclusive)'),
        ({**AVAILABILITY, "objective": "high"}, '"objective" must be a percentage between 0 and 100'),
        ({**AVAILABILITY, "objective": 90}, "too low for burn-rate alerts"),
        ({**AVAILABILITY, "window": "1y"}, '"window" must be one of "7d", "28d", "30d", got \'1y\''),
        ({**AVAILABILITY, "routes": "api/(unclosed"}, '"routes" is not a valid regular expression'),
        ({**AVAILABILITY, "routes": "^/api/"}, 'write "api/.*" rather than "^/api/"'),
        ({**AVAILABILITY, "routes": "api/(?!admin).*"}, "PromQL (RE2) does not support"),
        ({**AVAILABILITY, "threshold_ms": 250}, '"threshold_ms" only applies to kind "latency"'),
        ({**LATENCY, "threshold_ms": None}, 'a latency objective needs "threshold_ms"'),
        ({**AVAILABILITY, "target": 99}, "unknown keys ['target']; accepted: name, kind, objective"),
        ({"name": "x", "kind": "availability"}, "lacks 'objective'"),
        ("api", "entry 0 must be a dict"),
    ],
)
def test_invalid_entries_name_the_setting_entry_and_accepted_values(entry, expected):
    message = error_of([AVAILABILITY, entry] if isinstance(entry, dict) else [entry])
    assert 'DJANGO_OBSERVE["SLOS"] entry' in message
    assert expected in message


def test_names_are_unique():
    assert "\"name\" 'api-availability' is used twice" in error_of(
        [AVAILABILITY, {**LATENCY, "name": "api-availability"}]
    )


def test_not_a_list():
    assert 'DJANGO_OBSERVE["SLOS"] must be a list of dicts' in error_of({"name": "x"})
    with pytest.raises(conf.InvalidConfiguration, match="environment variable SLOS must be a JSON list"):
        conf.load_config(types.SimpleNamespace(DEBUG=False), environ={"SLOS": "[{oops"})


def test_latency_threshold_must_be_a_bucket_boundary():
    message = error_of([{**LATENCY, "threshold_ms": 300}])
    assert 'DJANGO_OBSERVE["SLOS"] entry 0 ("api-latency"): threshold_ms 300 is not a boundary of METRICS_BUCKETS' in (
        message
    )
    assert "use 250 or 500, or add 0.3 to METRICS_BUCKETS" in message


def test_latency_threshold_accepted_when_added_to_the_buckets():
    config = load([{**LATENCY, "threshold_ms": 300}], METRICS_BUCKETS=[0.1, 0.3, 1])
    assert config.slos[0].threshold_seconds == 0.3


# --- burn-rate arithmetic


def test_the_workbook_table_for_30_days():
    assert [(p.severity, p.long, p.short, p.factor) for p in ALERT_PAIRS] == [
        ("page", "1h", "5m", 14.4),
        ("page", "6h", "30m", 6.0),
        ("ticket", "1d", "2h", 3.0),
        ("ticket", "3d", "6h", 1.0),
    ]
    assert [round(budget_consumed(p, "30d"), 6) for p in ALERT_PAIRS] == [0.02, 0.05, 0.1, 0.1]


def test_budget_consumed_scales_with_the_window():
    fast = ALERT_PAIRS[0]
    assert budget_consumed(fast, "7d") == pytest.approx(14.4 / (7 * 24))
    assert budget_consumed(ALERT_PAIRS[3], "28d") == pytest.approx(3 / 28)


@pytest.mark.parametrize(
    ("objective", "budget", "page"), [(99.9, 0.001, 0.0144), (99.0, 0.01, 0.144), (95, 0.05, 0.72)]
)
def test_thresholds_are_burn_rate_times_budget(objective, budget, page):
    slo = Objective("x", "availability", objective)
    assert slo.budget == pytest.approx(budget)
    assert burn_threshold(slo, ALERT_PAIRS[0]) == pytest.approx(page)
    assert burn_threshold(slo, ALERT_PAIRS[3]) == pytest.approx(budget)


def test_scenarios_separate_page_ticket_and_quiet():
    for objective in (99.999, 99.9, 99.0, 95.0, 93.1):
        slo = Objective("x", "availability", objective)
        (fast, f_share, f_sev), (slow, s_share, s_sev), (ok, ok_share, ok_sev) = promtool.scenarios(slo)
        page = [burn_threshold(slo, p) for p in ALERT_PAIRS if p.severity == "page"]
        ticket = [burn_threshold(slo, p) for p in ALERT_PAIRS if p.severity == "ticket"]
        assert f_share <= 1 and all(f_share > t for t in page) and f_sev == ["page", "ticket"]
        assert all(s_share <= t for t in page) and any(s_share > t for t in ticket) and s_sev == ["ticket"]
        assert all(ok_share <= t for t in page + ticket) and ok_sev == []


@pytest.mark.parametrize(
    ("pattern", "route"),
    [
        (None, "api/example"),
        ("api/.*", "api/"),
        ("(api|v2)/chat", "api/chat"),
        ("api/messages/<int:message_id>", "api/messages/<int:message_id>"),
        (r"api/[a-z]+/\d+", "api/a/0"),
        (".*", "api/example"),
    ],
)
def test_example_route_matches_in_full(pattern, route):
    assert example_route(pattern) == route
    if pattern:
        assert re.fullmatch(pattern, route)


def test_the_private_regex_parser_example_route_reads_is_still_there():
    """example_route walks re._parser's tree (no public API gives it): a Python that renames it fails here."""
    import re._constants as c
    import re._parser as parser

    used = ("LITERAL", "NOT_LITERAL", "ANY", "IN", "MAX_REPEAT", "MIN_REPEAT", "SUBPATTERN", "BRANCH", "AT")
    used += ("NEGATE", "RANGE", "CATEGORY", "CATEGORY_DIGIT", "CATEGORY_WORD", "CATEGORY_SPACE")
    missing = [name for name in used if not hasattr(c, name)]
    assert not missing, f"re._constants lost {missing}: rewrite django_observe.alerting.slo.example_route"
    tree = parser.parse(r"a[^b]\d(x|y)+")
    assert [op for op, _ in tree] == [c.LITERAL, c.NOT_LITERAL, c.IN, c.MAX_REPEAT], "re._parser's tree changed shape"
    assert example_route(r"api/[^/]+/(\d+|new)/x?") == "api/a/0/"


def test_slo_module_imports_neither_django_nor_yaml():
    code = (
        "import sys; from django_observe.alerting import promtool, rules, slo; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'django', 'yaml'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --- generated rules


def test_default_config_reproduces_the_shipped_rule_file():
    """deploy/prometheus/rules.yml is the generator's output for the default configuration (one source)."""
    config = conf.load_config(types.SimpleNamespace(DEBUG=False), environ={})
    assert output.dump_yaml(rules.rule_file(config)) == (ROOT / "deploy/prometheus/rules.yml").read_text(), (
        "regenerate: python manage.py observe_rules --output deploy/prometheus/rules.yml (with SLOS unset)"
    )


def test_slo_rules_use_the_exposed_metric_names_and_labels():
    config = load([AVAILABILITY, LATENCY], METRICS_NAMESPACE="shop")
    groups = rules.rule_file(config)["groups"]
    slo = [g for g in groups if g["name"].startswith("django-observe-slo-")]
    assert [g["name"] for g in slo] == ["django-observe-slo-api-availability", "django-observe-slo-api-latency"]
    records = [r for r in slo[0]["rules"] if "record" in r]
    assert [r["record"] for r in records] == [f"slo:sli_error:ratio_rate{w}" for w in rules.RATE_WINDOWS]
    assert all(r["labels"] == {"slo": "api-availability"} for r in records)
    assert records[0]["expr"] == (
        'sum by (job) (rate(shop_http_server_request_duration_seconds_count{route=~"api/.*",status_code=~"5.."}[5m]))'
        '\n/\nsum by (job) (rate(shop_http_server_request_duration_seconds_count{route=~"api/.*"}[5m]))'
    )
    latency = [r for r in slo[1]["rules"] if "record" in r][2]["expr"]
    assert 'shop_http_server_request_duration_seconds_bucket{route=~"api/.*",le="0.25"}[1h]' in latency
    # The fixed-threshold rules are namespaced too, except prometheus_client's process metrics.
    threshold = rules.threshold_groups("shop")
    assert groups[: len(threshold)] == threshold
    fixed = {r.get("alert") or r["record"]: r["expr"] for g in threshold for r in g["rules"]}
    assert "shop_health_check_status" in fixed["HealthCheckFailing"]
    assert "shop_celery_workers" in fixed["CeleryWorkersAbsent"]
    assert "rate(process_cpu_seconds_total[5m])" in fixed["HighCPU"]


def test_alerts_have_the_multiwindow_form():
    config = load([AVAILABILITY])
    alerts = [r for r in rules.rule_file(config)["groups"][-1]["rules"] if "alert" in r]
    assert [(a["alert"], a["labels"]) for a in alerts] == [
        ("ApiAvailabilityErrorBudgetBurn", {"severity": "page", "slo": "api-availability"}),
        ("ApiAvailabilityErrorBudgetBurn", {"severity": "ticket", "slo": "api-availability"}),
    ]
    page, ticket = (a["expr"] for a in alerts)
    assert page == (
        '(\n  slo:sli_error:ratio_rate1h{slo="api-availability"} > (14.4 * 0.001)\nand\n'
        '  slo:sli_error:ratio_rate5m{slo="api-availability"} > (14.4 * 0.001)\n)\nor\n'
        '(\n  slo:sli_error:ratio_rate6h{slo="api-availability"} > (6 * 0.001)\nand\n'
        '  slo:sli_error:ratio_rate30m{slo="api-availability"} > (6 * 0.001)\n)'
    )
    assert "ratio_rate1d" in ticket and "ratio_rate2h" in ticket and "(3 * 0.001)" in ticket
    assert "ratio_rate3d" in ticket and "ratio_rate6h" in ticket and "(1 * 0.001)" in ticket
    assert "2% of the budget in 1h" in alerts[0]["annotations"]["description"]


def test_whole_second_thresholds_match_both_le_spellings():
    config = load([{**LATENCY, "threshold_ms": 1000}])
    expr = rules.rule_file(config)["groups"][-1]["rules"][0]["expr"]
    assert 'le=~"1|1\\\\.0"' in expr


def test_yaml_is_deterministic_and_round_trips():
    config = load([AVAILABILITY, LATENCY])
    first = output.dump_yaml(rules.rule_file(config))
    assert first == output.dump_yaml(rules.rule_file(load([AVAILABILITY, LATENCY])))
    assert "&id" not in first and "*id" not in first
    assert yaml.safe_load(first) == rules.rule_file(config)


def test_prometheus_rule_wraps_the_same_groups():
    config = load([AVAILABILITY])
    document = rules.prometheus_rule(config, "shop-observe", {"release": "prometheus"}, namespace="monitoring")
    assert document["apiVersion"] == "monitoring.coreos.com/v1"
    assert document["kind"] == "PrometheusRule"
    assert document["metadata"] == {
        "name": "shop-observe",
        "namespace": "monitoring",
        "labels": {"release": "prometheus"},
    }
    assert document["spec"] == rules.rule_file(config)


def test_generated_unit_tests_cover_every_slo_alert():
    config = load([AVAILABILITY, LATENCY])
    tests = promtool.slo_tests(config, ["rules.yml"])
    assert tests["rule_files"] == ["rules.yml"]
    firing = {t["alertname"] for case in tests["tests"] for t in case["alert_rule_test"] if t["exp_alerts"]}
    quiet = {t["alertname"] for case in tests["tests"] for t in case["alert_rule_test"] if not t["exp_alerts"]}
    assert firing == quiet == {"ApiAvailabilityErrorBudgetBurn", "ApiLatencyErrorBudgetBurn"}


def test_every_metric_the_slo_rules_read_is_in_the_catalogue():
    from prometheus_client import CollectorRegistry

    from django_observe.metrics.catalogue import build_catalogue
    from tests import promql

    registry = CollectorRegistry()
    build_catalogue(namespace="shop", registry=registry)
    exposed = {metric.name for metric in registry.collect()}
    config = load([AVAILABILITY, LATENCY], METRICS_NAMESPACE="shop")
    groups = rules.slo_groups(config.slos, config.metrics_namespace)
    recorded = {r["record"] for g in groups for r in g["rules"] if "record" in r}
    for rule in (r for g in groups for r in g["rules"]):
        for name in promql.metric_names(rule["expr"]):
            assert name in recorded or promql.base_name(name) in exposed, (rule.get("alert") or rule["record"], name)
