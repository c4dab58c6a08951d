"""promtool unit tests of the SLO alerts: a test file that feeds each alert burning and healthy series.

Plain dicts, like :mod:`django_observe.alerting.rules`; ``manage.py observe_rules --tests`` writes them as YAML.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

from .rules import REQUESTS, alert_annotations, alert_name, format_number, metric, promql_string
from .slo import ALERT_PAIRS, Objective, example_route

__all__ = ["TEST_JOB", "relative_path", "scenarios", "slo_tests"]

TEST_JOB = "django"
_TOTAL_PER_MINUTE = 100_000
_MINUTES = 60
_EVAL = "30m"


def scenarios(objective: Objective) -> list[tuple[str, float, list[str]]]:
    """(name, share of bad requests, severities expected to fire) for the generated unit tests.

    A fast burn (twice the page's 14.4x, capped at all requests) pages and tickets; a slow burn (2x)
    only tickets; a healthy service (half its budget) stays quiet.
    """
    budget = objective.budget
    fast = min(1.0, 2 * ALERT_PAIRS[0].factor * budget)
    return [
        ("fast burn pages", fast, ["page", "ticket"]),
        ("slow burn tickets, does not page", 2 * budget, ["ticket"]),
        ("healthy stays quiet", budget / 2, []),
    ]


def _series(objective: Objective, namespace: str, route: str, bad_share: float, job: str) -> list[dict[str, str]]:
    """Counter series of one route with ``bad_share`` of bad requests, in promtool's expanding notation."""
    bad = _TOTAL_PER_MINUTE * bad_share
    good = _TOTAL_PER_MINUTE - bad
    labels = f'job="{job}",method="GET",route={promql_string(route)}'

    def counter(name: str, extra: str, per_minute: float) -> dict[str, str]:
        values = f"0+{format_number(per_minute)}x{_MINUTES}"
        return {"series": f"{metric(namespace, name)}{{{labels}{extra}}}", "values": values}

    if objective.kind == "availability":
        return [
            counter(f"{REQUESTS}_count", ',status_code="500"', bad),
            counter(f"{REQUESTS}_count", ',status_code="200"', good),
        ]
    from prometheus_client.utils import floatToGoString

    le = floatToGoString(objective.threshold_seconds)
    return [
        counter(f"{REQUESTS}_bucket", f',status_code="200",le="{le}"', good),
        counter(f"{REQUESTS}_bucket", ',status_code="200",le="+Inf"', _TOTAL_PER_MINUTE),
        counter(f"{REQUESTS}_count", ',status_code="200"', _TOTAL_PER_MINUTE),
    ]


def _expected(objective: Objective, severities: Sequence[str], job: str) -> list[dict[str, Any]]:
    out = []
    for severity in severities:
        expected = alert_annotations(objective, severity)
        expected["summary"] = expected["summary"].replace("{{ $labels.job }}", job)
        out.append(
            {
                "exp_labels": {"severity": severity, "slo": objective.name, "job": job},
                "exp_annotations": expected,
            }
        )
    return out


def _outside_route(objective: Objective) -> str | None:
    if objective.routes is None:
        return None
    return next((r for r in ("__unmatched__", "admin/", "zz/other") if not re.fullmatch(objective.routes, r)), None)


def slo_tests(config: Any, rule_files: Sequence[str]) -> dict[str, Any]:
    """A promtool test file proving each SLO alert fires on a burning series and stays quiet on a healthy one.

    Args:
        config: the ObserveConfig whose ``SLOS`` the rules were generated from.
        rule_files: paths of the generated rule files, relative to the test file.

    Raises:
        ValueError: if no route label matching an objective's ``routes`` can be derived.
    """
    ns = config.metrics_namespace
    tests = []
    for objective in config.slos:
        route = example_route(objective.routes)
        if route is None:
            raise ValueError(
                f"SLO {objective.name}: cannot derive a route label matching {objective.routes!r} for the unit tests"
            )
        for title, share, severities in scenarios(objective):
            tests.append(
                {
                    "name": f"SLO {objective.name}: {title}",
                    "interval": "1m",
                    "input_series": _series(objective, ns, route, share, TEST_JOB),
                    "alert_rule_test": [
                        {
                            "eval_time": _EVAL,
                            "alertname": alert_name(objective),
                            "exp_alerts": _expected(objective, severities, TEST_JOB),
                        }
                    ],
                }
            )
        outside = _outside_route(objective)
        if outside is not None:
            tests.append(
                {
                    "name": f"SLO {objective.name}: requests outside its routes do not count",
                    "interval": "1m",
                    "input_series": _series(objective, ns, outside, 1.0, TEST_JOB)
                    + _series(objective, ns, route, 0.0, TEST_JOB),
                    "alert_rule_test": [
                        {"eval_time": _EVAL, "alertname": alert_name(objective), "exp_alerts": []},
                    ],
                }
            )
    return {"rule_files": list(rule_files), "evaluation_interval": "1m", "tests": tests}


def relative_path(target: str, start_file: str) -> str:
    """``target`` as a path relative to the directory of ``start_file`` (promtool resolves it there)."""
    return os.path.relpath(os.path.abspath(target), os.path.dirname(os.path.abspath(start_file)))
