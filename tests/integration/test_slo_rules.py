"""``manage.py observe_rules`` in a subprocess; real promtool checks the rules and runs the generated tests."""

import json
import subprocess

import pytest
import yaml

from tests import support

SLOS = [
    {"name": "api-availability", "kind": "availability", "objective": 99.9, "routes": "api/.*", "window": "30d"},
    {"name": "api-latency", "kind": "latency", "objective": 99, "threshold_ms": 250, "routes": "api/.*"},
    {
        "name": "chat-fast",
        "kind": "latency",
        "objective": 95,
        "threshold_ms": 1000,
        "routes": "api/chat",
        "window": "7d",
    },
    {"name": "everything", "kind": "availability", "objective": 99.99, "window": "28d"},
]


def promtool(*args, cwd):
    binary = support.require_binary("promtool")
    return subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def generate(tmp_path, *args, **env):
    rules, tests = tmp_path / "rules" / "slo.rules.yml", tmp_path / "tests" / "slo.rules.test.yml"
    rules.parent.mkdir()
    tests.parent.mkdir()
    support.manage(
        "observe_rules", "--output", str(rules), "--tests", str(tests), *args, env=support.project_env(**env)
    )
    return rules, tests


@pytest.mark.parametrize("namespace", ["", "shop"])
def test_generated_rules_pass_promtool_check_and_their_tests(tmp_path, namespace):
    rules, tests = generate(tmp_path, SLOS=json.dumps(SLOS), METRICS_NAMESPACE=namespace)
    checked = promtool("check", "rules", str(rules), cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", str(tests), cwd=tmp_path)  # rule_files are relative to the test file
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout
    cases = yaml.safe_load(tests.read_text())["tests"]
    assert {c["name"].split(":")[0] for c in cases} == {f"SLO {s['name']}" for s in SLOS}
    if namespace:
        assert "shop_http_server_request_duration_seconds_count" in rules.read_text()


@pytest.mark.parametrize(
    "mutations",
    [
        # The page never fires: the fast-burn case fails.
        {"> (14.4 * 0.001)": "> (1000 * 0.001)", "> (6 * 0.001)": "> (1000 * 0.001)"},
        # The ticket fires at a tenth of the budget: the healthy case fails.
        {"> (1 * 0.001)": "> (0.1 * 0.001)"},
    ],
)
def test_generated_tests_fail_on_a_broken_alert(tmp_path, mutations):
    """The tests have teeth: a rule file whose thresholds are wrong fails them."""
    rules, tests = generate(tmp_path, SLOS=json.dumps(SLOS[:1]))
    text = rules.read_text()
    for old, new in mutations.items():
        assert old in text
        text = text.replace(old, new)
    rules.write_text(text)
    tested = promtool("test", "rules", str(tests), cwd=tmp_path)
    assert tested.returncode != 0
    assert "ApiAvailabilityErrorBudgetBurn" in tested.stdout + tested.stderr


def test_settings_objectives_by_default_and_stdout(tmp_path):
    result = support.manage("observe_rules", env=support.project_env())
    document = yaml.safe_load(result.stdout)
    names = [g["name"] for g in document["groups"]]
    assert names[:4] == [
        "django-observe-recording",
        "django-observe-critical",
        "django-observe-warning",
        "django-observe-infrastructure",
    ]
    assert names[4:] == ["django-observe-slo-api-availability", "django-observe-slo-api-latency"]  # testproject
    again = support.manage("observe_rules", env=support.project_env())
    assert again.stdout == result.stdout  # deterministic


def test_prometheusrule_output(tmp_path):
    out = tmp_path / "prometheusrule.yaml"
    support.manage(
        "observe_rules",
        "--format",
        "prometheusrule",
        "--output",
        str(out),
        "--namespace",
        "monitoring",
        "--label",
        "release=prometheus",
        env=support.project_env(SLOS=json.dumps(SLOS)),
    )
    document = yaml.safe_load(out.read_text())
    assert document["apiVersion"] == "monitoring.coreos.com/v1"
    assert document["kind"] == "PrometheusRule"
    assert document["metadata"]["name"] == "testproject-observe"
    assert document["metadata"]["namespace"] == "monitoring"
    assert document["metadata"]["labels"]["release"] == "prometheus"
    groups = document["spec"]["groups"]
    assert all(set(g) == {"name", "rules"} and g["rules"] for g in groups)
    for rule in (r for g in groups for r in g["rules"]):
        assert ("alert" in rule) != ("record" in rule) and isinstance(rule["expr"], str)
        assert set(rule) <= {"alert", "record", "expr", "for", "labels", "annotations"}
    # The spec is a plain rule file: promtool accepts it as one.
    plain = tmp_path / "spec.yml"
    plain.write_text(yaml.safe_dump(document["spec"]))
    checked = promtool("check", "rules", str(plain), cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize(
    ("slos", "expected"),
    [
        (
            [{"name": "api-latency", "kind": "latency", "objective": 99, "threshold_ms": 300}],
            'environment variable SLOS entry 0 ("api-latency"): threshold_ms 300 is not a boundary of METRICS_BUCKETS',
        ),
        ([{"name": "api", "kind": "availability", "objective": 120}], '"objective" must be a percentage'),
        ([{"name": "api", "kind": "availability", "objective": 99, "routes": "^/api/"}], 'write "api/.*"'),
    ],
)
def test_broken_config_fails_with_a_clear_error(tmp_path, slos, expected):
    result = support.manage("observe_rules", env=support.project_env(SLOS=json.dumps(slos)), check=False)
    assert result.returncode != 0
    assert expected in result.stderr
    assert "Traceback" not in result.stderr or "InvalidConfiguration" in result.stderr


def test_tests_need_a_rule_file(tmp_path):
    result = support.manage("observe_rules", "--tests", str(tmp_path / "t.yml"), env=support.project_env(), check=False)
    assert result.returncode != 0
    assert "--tests needs --output FILE and --format rules" in result.stderr


def test_generated_rules_evaluate_against_the_running_project(tmp_path):
    """The SLO recording rules read what the project really exposes: a real Prometheus scrapes gunicorn,
    evaluates the generated file, and the error ratios reflect the traffic (1 crash in 10 API requests)."""
    import requests

    from tests import support_load, support_metrics

    port = support.free_port()
    env = support.sqlite_env(tmp_path, SLOS=json.dumps(SLOS[:2]), METRICS_PORT=str(port))
    rules = tmp_path / "slo.rules.yml"
    support.manage("observe_rules", "--output", str(rules), env=env)
    with support.gunicorn(env, tmp_path / "web.log", workers=2) as web:
        support.wait_for_port("127.0.0.1", port, 20)
        with support_metrics.prometheus({"django": port}, rule_files=(rules,)) as prom:
            ping, crash = support_load.Request("GET", "/api/ping"), support_load.Request("GET", "/api/crash")
            # rate() counts increases only: let Prometheus see both series before the measured traffic.
            support_load.send_all(web.port, [ping, crash], concurrency=1, timeout=10)
            support.wait_until(
                lambda: support_metrics.query(prom, 'http_server_request_duration_seconds_count{status_code="500"}'),
                timeout=20,
                message="the 500 series scraped",
            )
            statuses = [r.status for r in support_load.send_all(web.port, ([ping] * 9 + [crash]) * 3, concurrency=2)]
            assert statuses.count(500) == 3 and statuses.count(200) == 27

            def ratio(slo):
                result = support_metrics.query(prom, f'slo:sli_error:ratio_rate5m{{slo="{slo}",job="django"}}')
                return [float(r["value"][1]) for r in result if r["value"][1] != "NaN"]

            availability = support.wait_until(
                lambda: [v for v in ratio("api-availability") if v > 0], timeout=30, message="availability SLI"
            )
            assert 0.05 < availability[0] < 0.2, availability  # 3 of 30 (rate() extrapolates a little)
            # Every request answered well under 250 ms: nothing burns the latency objective.
            assert support.wait_until(lambda: ratio("api-latency"), timeout=30, message="latency SLI") == [0.0]
            loaded = requests.get(f"{prom}/api/v1/rules", timeout=10).json()["data"]["groups"]
            alerts = {r["name"] for g in loaded for r in g["rules"] if r["type"] == "alerting"}
            assert {"ApiAvailabilityErrorBudgetBurn", "ApiLatencyErrorBudgetBurn", "HighErrorRate"} <= alerts
