"""``manage.py observe_health [--readiness] [--json]``: run the checks in-process; exit 0 or 1.

For Docker ``HEALTHCHECK`` without curl. Exit 0 when healthy or degraded, 1 when a
critical check fails.

``manage.py observe_health --celery-worker [--max-age SECONDS]``: the liveness of the Celery worker on this
host or pod, from its heartbeat file (``CELERY_HEARTBEAT_FILE``) alone, with no broker round trip: exit 0
when the worker touched it within ``--max-age`` seconds, 1 otherwise, with a one-line reason (a Kubernetes
exec ``livenessProbe``).
"""

from __future__ import annotations

import json
import logging

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from django_observe.conf import get_config
from django_observe.health import render
from django_observe.health.runner import runner_of
from django_observe.integrations.celery import heartbeat_age, heartbeat_files, heartbeat_path
from django_observe.runtime import get_runtime


class Command(BaseCommand):
    help = "Run django_observe's health checks in this process and exit 0 (healthy or degraded) or 1 (unhealthy)."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser):
        parser.add_argument("--readiness", action="store_true", help="Only the critical checks, as /readyz.")
        parser.add_argument("--json", action="store_true", help="Print the /health JSON body with full details.")
        parser.add_argument(
            "--celery-worker",
            action="store_true",
            help="Only the liveness of the Celery worker on this host, from its heartbeat file (no broker).",
        )
        parser.add_argument(
            "--max-age",
            type=float,
            default=None,
            help="With --celery-worker: seconds the heartbeat may be old (default: 3 x CELERY_HEARTBEAT_INTERVAL).",
        )

    def handle(self, *args, **options):
        runtime = get_runtime()
        try:
            config = get_config()
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        if options["celery_worker"]:
            self._celery_worker(config, options["max_age"])
            return
        runner = runner_of(runtime.health)
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

    def _celery_worker(self, config, max_age: float | None) -> None:
        path = heartbeat_path(config)
        if path is None:
            raise CommandError('CELERY_HEARTBEAT_FILE is "off": the worker writes no heartbeat')
        limit = max_age if max_age is not None else 3 * config.celery_heartbeat_interval
        files = heartbeat_files(config)  # the configured file, or every worker's own in the private directory
        if not files:
            self.stdout.write(f"celery worker not alive: no heartbeat file at {path}")
            raise SystemExit(1)
        for file in files:  # every worker of this host (pod) must be alive
            age = heartbeat_age(file)
            if age is None:
                self.stdout.write(f"celery worker not alive: no heartbeat file at {file}")
                raise SystemExit(1)
            if age > limit:
                self.stdout.write(f"celery worker not alive: heartbeat {age:.1f} s old, limit {limit:g} s ({file})")
                raise SystemExit(1)
        for file in files:
            self.stdout.write(f"celery worker alive: heartbeat {heartbeat_age(file) or 0.0:.1f} s old ({file})")
