"""Run the test project: migrate, then a web server and a Celery worker side by side.

``python manage.py rundemo`` serves http://127.0.0.1:8000/healthz and the console at /observe/ (a superuser
``admin`` with a password printed at start) until Ctrl-C.
"""

import os
import secrets
import signal
import subprocess
import sys
import time

from django.core.management import call_command
from django.core.management.base import BaseCommand

CONSOLE_USER = "admin"


class Command(BaseCommand):
    help = "Migrate and run the test project's web server and Celery worker together."
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-worker", action="store_true", help="Run the web server only.")
        parser.add_argument(
            "--metrics-port",
            type=int,
            default=None,
            help="Metrics port of the web server (METRICS_PORT, default 8001); the worker's is the next one "
            "(METRICS_WORKER_PORT). 0 turns both off.",
        )
        parser.add_argument(
            "--exit-after", type=float, default=0, help="Stop after this many seconds (0: run until Ctrl-C)."
        )

    def handle(self, *args, **options):
        call_command("migrate", interactive=False, verbosity=0)
        token = self._token()
        console_password = self._console_user()
        env = dict(os.environ, PYTHONUNBUFFERED="1", TESTPROJECT_CONSOLE="1")
        if options["metrics_port"] is not None:
            port = options["metrics_port"]
            env.update(METRICS_PORT=str(port), METRICS_WORKER_PORT=str(port + 1 if port else 0))
        procs = []
        if not options["no_worker"]:
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "celery",
                        "-A",
                        "testproject",
                        "worker",
                        "--loglevel",
                        "INFO",
                        "--concurrency",
                        "2",
                        "--hostname",
                        f"demo-{os.getpid()}@%h",
                    ],
                    env=env,
                )
            )
        procs.append(
            subprocess.Popen(
                [sys.executable, "manage.py", "runserver", f"{options['host']}:{options['port']}", "--noreload"],
                env=env,
            )
        )
        base = f"http://{options['host']}:{options['port']}"
        metrics = ""
        if env.get("METRICS_PORT") not in (None, "0"):
            web, worker = env["METRICS_PORT"], env["METRICS_WORKER_PORT"]
            metrics = f"Metrics on http://127.0.0.1:{web}/metrics (web) and :{worker} (worker)\n"
        self.stdout.write(
            f"\nServing {base}/healthz, {base}/readyz, {base}/health and {base}/api/health\n"
            + metrics
            + f"Console: {base}/observe/ (log in as {CONSOLE_USER}, password {console_password})\n"
            + f"Try: curl -X POST {base}/api/chat -H 'Authorization: Bearer {token}' -d '{{\"message\": \"hi\"}}'\n"
            "Ctrl-C stops web and worker.\n"
        )
        deadline = time.monotonic() + options["exit_after"] if options["exit_after"] else None
        # SIGTERM (docker stop, a test's cleanup) stops both children like Ctrl-C does.
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
        try:
            while all(p.poll() is None for p in procs):
                if deadline and time.monotonic() > deadline:
                    break
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        finally:
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()
        failed = [p.returncode for p in procs if p.returncode not in (0, -signal.SIGTERM, None)]
        if failed and not deadline:
            raise SystemExit(1)

    def _console_user(self) -> str:
        """The demo's console user (a superuser), with a new random password each run."""
        from django.contrib.auth import get_user_model

        password = secrets.token_urlsafe(12)
        user, _ = get_user_model().objects.get_or_create(username=CONSOLE_USER)
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        return password

    def _token(self) -> str:
        from django.contrib.auth import get_user_model

        from testproject.demo.models import ApiToken

        user, _ = get_user_model().objects.get_or_create(username="demo")
        token = ApiToken.objects.filter(user=user).first() or ApiToken.objects.create(user=user)
        return token.key
