"""``manage.py observe_health [--readiness] [--json]``: run the checks in-process; exit 0 or 1.

For Docker ``HEALTHCHECK`` without curl. Exit 0 when healthy or degraded, 1 when a
critical check fails.
"""

from __future__ import annotations

import json
import logging

from django.core.management.base import BaseCommand, CommandError

from django_observe.health import render
from django_observe.runtime import get_runtime


class Command(BaseCommand):
    help = "Run django_observe's health checks in this process and exit 0 (healthy or degraded) or 1 (unhealthy)."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser):
        parser.add_argument("--readiness", action="store_true", help="Only the critical checks, as /readyz.")
        parser.add_argument("--json", action="store_true", help="Print the /health JSON body with full details.")

    def handle(self, *args, **options):
        runtime = get_runtime()
        runner = runtime.health
        if runner is None:
            raise CommandError("the health checks are not configured: run manage.py check")
        # The command prints every result itself; log lines of the checks (state changes, driver
        # warnings) would repeat them and break --json output on stdout.
        logging.disable(logging.CRITICAL)
        try:
            results = runner.run_sync(runner.select(critical_only=options["readiness"]))
        finally:
            logging.disable(logging.NOTSET)
        status = render.overall_status(results)
        if options["json"]:
            body = render.component_body(results, level=render.FULL, version=runtime.config.service_version)
            self.stdout.write(json.dumps(body, indent=2, default=str))
        else:
            for result in results:
                line = f"{result.id:<24} {result.status:<5} {result.duration_ms:8.1f} ms"
                if result.error:
                    line += f"  {result.error}"
                self.stdout.write(line)
            self.stdout.write(status)
        if status == "unhealthy":
            raise SystemExit(1)
