"""``manage.py observe_rules``: Prometheus recording and alert rules for the built-in alerts and ``SLOS``.

Thin: the rules are built by :mod:`django_observe.alerting` from the loaded configuration; writing them needs
PyYAML (the ``alerting`` extra), and its absence is a clear error, not a traceback.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from pathlib import Path

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from django_observe.alerting import budgets, output, promtool, rules
from django_observe.conf import get_config

_DNS_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "django"


def uses_authorization(app_names: Iterable[str]) -> bool:
    """django.contrib.auth or DRF is installed: requests can be authorized, so the authorization metrics exist."""
    return bool({"django.contrib.auth", "rest_framework"} & set(app_names))


class Command(BaseCommand):
    help = (
        "Write Prometheus rules: the built-in fixed-threshold alerts plus multiwindow, multi-burn-rate alerts for "
        'DJANGO_OBSERVE["SLOS"], as a rule file or a Kubernetes PrometheusRule; optionally promtool unit tests.'
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser):
        parser.add_argument("--output", metavar="FILE", help="Write the rules to FILE (default: standard output).")
        parser.add_argument(
            "--format",
            choices=("rules", "prometheusrule"),
            default="rules",
            help="rules: a Prometheus rule file; prometheusrule: a monitoring.coreos.com/v1 PrometheusRule.",
        )
        parser.add_argument(
            "--tests",
            metavar="FILE",
            help="Also write promtool tests of the SLO and LLM budget alerts (needs --output and --format rules).",
        )
        parser.add_argument("--name", help="PrometheusRule metadata.name (default: <SERVICE_NAME>-observe).")
        parser.add_argument("--namespace", help="PrometheusRule metadata.namespace (default: none).")
        parser.add_argument(
            "--label",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="PrometheusRule metadata label, repeatable (e.g. release=prometheus for a ruleSelector).",
        )

    def handle(self, *args, **options):
        try:
            self._write(options)
        except output.YAMLUnavailable as exc:
            raise CommandError(str(exc)) from None

    def _write(self, options):
        try:
            config = get_config()
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        # The seed's authorization recording rules only where those series exist (a project that authenticates).
        authorization = uses_authorization(app.name for app in apps.get_app_configs())
        if options["tests"] and (not options["output"] or options["format"] != "rules"):
            raise CommandError("--tests needs --output FILE and --format rules (promtool reads plain rule files)")

        if options["format"] == "prometheusrule":
            name = options["name"] or f"{_slug(config.service_name)}-observe"
            if len(name) > 253 or not _DNS_NAME.fullmatch(name):
                raise CommandError(f"--name must be a DNS subdomain name (lower-case, digits, '-', '.'), got {name!r}")
            labels = {
                "app.kubernetes.io/name": _slug(config.service_name),
                "app.kubernetes.io/part-of": "django-observe",
            }
            for item in options["label"]:
                key, sep, value = item.partition("=")
                if not sep or not key:
                    raise CommandError(f"--label must be KEY=VALUE, got {item!r}")
                labels[key] = value
            document = rules.prometheus_rule(config, name, labels, options["namespace"], authorization)
        else:
            document = rules.rule_file(config, authorization)
        text = output.dump_yaml(document)

        if options["tests"]:
            try:
                tests = promtool.slo_tests(config, [promtool.relative_path(options["output"], options["tests"])])
            except ValueError as exc:
                raise CommandError(str(exc)) from None
            tests["tests"] += budgets.budget_tests(config)
            tests_text = output.dump_yaml(tests, header=f"# promtool test rules {Path(options['tests']).name}\n")

        if options["output"]:
            Path(options["output"]).write_text(text)
        else:
            sys.stdout.write(text)
        if options["tests"]:
            Path(options["tests"]).write_text(tests_text)
