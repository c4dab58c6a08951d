"""``manage.py observe_doctor [--json]``: every silent misconfiguration this project has, each with its fix.

Run it beside the running server (same host or pod, same environment): it scrapes the metrics port, sends a
test span (and a test log record and metric when the OTLP log and metrics exporters are on) the OTLP collector
must acknowledge, pings the Celery workers of every configured queue and runs
every health check. Exit 0 when nothing is found, 1 otherwise.
"""

from __future__ import annotations

import json
import logging

from django.core.management.base import BaseCommand

from django_observe import doctor, wiring


class Command(BaseCommand):
    help = "Find django_observe misconfigurations and prove each signal arrives; exit 0 when clean, 1 otherwise."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="Print the findings as JSON.")

    def handle(self, *args, **options):
        facts = wiring.doctor_facts()
        # Library warnings met on the way (kombu, the checks' own state changes) would repeat the findings
        # and break --json on stdout.
        logging.disable(logging.CRITICAL)
        try:
            findings = doctor.diagnose(facts)
        finally:
            logging.disable(logging.NOTSET)
        if options["json"]:
            body = {"ok": not findings, "findings": [finding.as_dict() for finding in findings]}
            self.stdout.write(json.dumps(body, indent=2))
        elif not findings:
            self.stdout.write("observe_doctor: no problem found")
        else:
            for finding in findings:
                self.stdout.write(f"[{finding.id}] {finding.problem}")
                if finding.fix:
                    self.stdout.write(f"    fix: {finding.fix}")
            self.stdout.write(f"observe_doctor: {len(findings)} problem(s) found")
        if findings:
            raise SystemExit(1)
