"""Run the test project: migrate, then a web server and a Celery worker side by side.

``python manage.py rundemo`` serves http://127.0.0.1:8000/healthz until Ctrl-C.
"""

import os
import signal
import subprocess
import sys
import time

from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Migrate and run the test project's web server and Celery worker together."
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-worker", action="store_true", help="Run the web server only.")
        parser.add_argument(
            "--exit-after", type=float, default=0, help="Stop after this many seconds (0: run until Ctrl-C)."
        )

    def handle(self, *args, **options):
        call_command("migrate", interactive=False, verbosity=0)
        token = self._token()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
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
        self.stdout.write(
            f"\nServing {base}/healthz, {base}/readyz, {base}/health and {base}/api/health\n"
            f"Try: curl -X POST {base}/api/chat -H 'Authorization: Bearer {token}' -d '{{\"message\": \"hi\"}}'\n"
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

    def _token(self) -> str:
        from django.contrib.auth import get_user_model

        from testproject.demo.models import ApiToken

        user, _ = get_user_model().objects.get_or_create(username="demo")
        token = ApiToken.objects.filter(user=user).first() or ApiToken.objects.create(user=user)
        return token.key
