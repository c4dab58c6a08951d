"""The README's copy-paste set-up (issue #32): its urls.py serves /healthz and /api/health with no system-check
warning, and the quick start shows the production commands after the two commands."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

from django.core import checks
from django.test import Client, override_settings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def readme_urls_module() -> str:
    block = re.search(r"# urls\.py\n(.*?)```", README, re.S).group(1)
    source = block.replace("    # ...\n", "")
    module = types.ModuleType("readme_urls")
    exec(compile(source, "README.md urls.py", "exec"), module.__dict__)  # noqa: S102 - the README's own code
    sys.modules["readme_urls"] = module
    return "readme_urls"


def test_readme_urls_serve_both_paths_without_warnings(db):
    with override_settings(ROOT_URLCONF=readme_urls_module()):
        messages = checks.run_checks(tags=[checks.Tags.urls])
        assert [m.id for m in messages] == []
        client = Client()
        assert client.get("/healthz").status_code == 200
        assert client.get("/api/health").status_code in (200, 503)
        from django.urls import reverse

        assert reverse("django_observe:healthz") == "/healthz"
        assert reverse("api-health:healthz") == "/api/healthz"


def test_quick_start_keeps_its_two_commands_first_then_production_commands():
    quick = README.split("## Quick start", 1)[1]
    first_block = re.search(r"```bash\n(.*?)```", quick, re.S).group(1).splitlines()
    assert first_block[0].endswith("manage.py rundemo")
    assert first_block[1].endswith("-m pytest")
    production = quick.split("```", 2)[2]
    assert "gunicorn -c python:django_observe.gunicorn" in production
    assert "uvicorn mysite.asgi:application --no-access-log" in production
    assert "celery -A mysite worker" in production


def test_deploy_examples_run_gunicorn_with_its_configuration():
    for path in ("deploy/docker-compose.yml", "deploy/Dockerfile", "deploy/kubernetes/web.yaml"):
        text = (ROOT / path).read_text()
        assert '"gunicorn", "-c", "python:django_observe.gunicorn"' in text, path
