"""LLM budget alerts: ``manage.py observe_rules`` with LLM_*_BUDGET in a subprocess; real promtool checks the
rules and runs the generated tests (each alert firing above its budget, quiet below it)."""

import subprocess

import pytest
import yaml

from django_observe.alerting.budgets import ALERTS
from tests import support

pytestmark = pytest.mark.integration

BUDGETS = {"LLM_DAILY_BUDGET": "50", "LLM_HOURLY_BUDGET": "5", "LLM_DAILY_TOKEN_BUDGET": "1000000"}


def promtool(*args, cwd):
    binary = support.require_binary("promtool")
    return subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def generate(tmp_path, **env):
    rules, tests = tmp_path / "rules" / "llm.rules.yml", tmp_path / "tests" / "llm.rules.test.yml"
    rules.parent.mkdir()
    tests.parent.mkdir()
    support.manage("observe_rules", "--output", str(rules), "--tests", str(tests), env=support.project_env(**env))
    return rules, tests


@pytest.mark.parametrize("namespace", ["", "shop"])
def test_budget_alerts_fire_above_their_budgets_and_stay_quiet_below(tmp_path, namespace):
    support.require_binary("promtool")
    rules, tests = generate(tmp_path, **BUDGETS, LLM_CURRENCY="EUR", METRICS_NAMESPACE=namespace)
    checked = promtool("check", "rules", str(rules), cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", str(tests), cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout
    groups = yaml.safe_load(rules.read_text())["groups"]
    [budgets] = [g for g in groups if g["name"] == "django-observe-llm-budgets"]
    assert [r["alert"] for r in budgets["rules"]] == list(ALERTS)
    daily = budgets["rules"][0]
    assert daily["annotations"]["summary"] == "Daily spending exceeds threshold"
    assert daily["labels"] == {"severity": "warning"}
    prefix = f"{namespace}_" if namespace else ""
    assert daily["expr"] == f'sum(increase({prefix}gen_ai_client_cost_total{{currency="EUR"}}[1d])) > 50'
    cases = [c for c in yaml.safe_load(tests.read_text())["tests"] if c["name"].startswith("LLM budgets")]
    checks = [t for c in cases for t in c["alert_rule_test"]]
    assert {t["alertname"] for t in checks if t["exp_alerts"]} == set(ALERTS), "every alert fires in a case"
    assert {t["alertname"] for t in checks if not t["exp_alerts"]} == set(ALERTS), "and is quiet in another"


MUTATIONS = [
    ("[1d])) > 50", "[1d])) > 500"),  # the daily alert never fires
    ("* 86400 > 50", "* 3600 > 50"),  # the projection only sees an hour
    ('gen_ai_token_type=~"input|output"', 'gen_ai_token_type=~".+"'),  # breakdowns added to the totals
]


def test_the_generated_tests_catch_a_broken_rule(tmp_path):
    support.require_binary("promtool")
    rules, tests = generate(tmp_path, **BUDGETS)
    text = rules.read_text()
    for old, new in MUTATIONS:
        assert old in text
        rules.write_text(text.replace(old, new))
        tested = promtool("test", "rules", str(tests), cwd=tmp_path)
        assert tested.returncode != 0 and "FAILED" in tested.stdout + tested.stderr, (old, new)


def test_no_budget_no_rules(tmp_path):
    rules, _ = generate(tmp_path)
    assert "django-observe-llm-budgets" not in rules.read_text()
