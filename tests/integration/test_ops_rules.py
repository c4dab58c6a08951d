"""Alert and recording rules: promtool checks them and runs their unit tests (Debian's prometheus package)."""

import subprocess
from pathlib import Path

import yaml

from tests import support

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


def promtool(*args):
    binary = support.require_binary("promtool")
    return subprocess.run([binary, *args], cwd=RULES, capture_output=True, text=True, timeout=120)


def test_rules_are_valid():
    result = promtool("check", "rules", "rules.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_unit_tests_pass():
    result = promtool("test", "rules", "rules.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_unit_test():
    rules = yaml.safe_load((RULES / "rules.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    tests = yaml.safe_load((RULES / "rules.test.yml").read_text())
    tested_firing = {
        t["alertname"] for case in tests["tests"] for t in case.get("alert_rule_test", []) if t["exp_alerts"]
    }
    assert alerts == tested_firing
