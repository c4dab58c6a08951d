"""The built wheel, installed with its core dependencies alone (no extras) in a fresh venv, runs a minimal project."""

import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from tests import support

pytestmark = pytest.mark.integration

SETTINGS = """
SECRET_KEY = "wheel-test"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["django_observe"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": DB}}
ROOT_URLCONF = "wheel_urls"
USE_TZ = True
"""

URLS = """
from django.urls import include, path

urlpatterns = [path("", include("django_observe.urls"))]
"""


def run(argv, **kw):
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, **kw)


def build_wheel(tmp_path):
    """``pip wheel --no-deps`` of a copy of the sources, so the build leaves nothing in the checkout."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(support.ROOT / name, source / name)
    shutil.copytree(
        support.ROOT / "django_observe", source / "django_observe", ignore=shutil.ignore_patterns("__pycache__")
    )
    built = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(source)])
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("django_observe-*.whl")
    return wheel


def test_the_wheel_installed_without_extras_runs_check_health_and_rules(tmp_path):
    wheel = build_wheel(tmp_path)
    contents = zipfile.ZipFile(wheel).namelist()
    assert "django_observe/py.typed" in contents
    assert "django_observe/alerting/slo.py" in contents and "django_observe/metrics/collectors/base.py" in contents
    assert not any(name.startswith("tests/") for name in contents)

    venv = tmp_path / "venv"
    created = run([sys.executable, "-m", "venv", str(venv)])
    assert created.returncode == 0, created.stderr[-3000:]
    python = str(venv / "bin" / "python")
    installed = run([python, "-m", "pip", "install", "-q", str(wheel)])  # the machine's pip configuration
    assert installed.returncode == 0, installed.stderr[-3000:]
    listed = run([python, "-m", "pip", "list", "--format", "freeze"]).stdout.lower()
    for extra in ("pyyaml", "celery", "redis", "psycopg", "opentelemetry-sdk"):
        assert f"{extra}==" not in listed, f"{extra} came with the core install"

    project = tmp_path / "project"
    project.mkdir()
    (project / "wheel_settings.py").write_text(f"DB = {str(tmp_path / 'db.sqlite3')!r}\n" + SETTINGS)
    (project / "wheel_urls.py").write_text(URLS)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO", "PYTEST_", "PYTHON", "METRICS_"))}
    env.update(DJANGO_SETTINGS_MODULE="wheel_settings", PYTHONPATH=str(project), PYTHONUNBUFFERED="1")
    for key in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "LOG_LEVEL", "LOG_FORMAT", "OTEL_ENABLED", "SLOS"):
        env.pop(key, None)

    def django_admin(*args):
        return run([python, "-m", "django", *args], cwd=project, env=env)

    where = run([python, "-c", "import django_observe; print(django_observe.__file__)"], cwd=project, env=env)
    assert where.stdout.startswith(str(venv)), where  # the installed wheel, not the checkout

    checked = django_admin("check")
    assert checked.returncode == 0, checked.stderr[-3000:]
    migrated = django_admin("migrate", "-v0")
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    health = django_admin("observe_health")
    assert health.returncode == 0, health.stdout + health.stderr[-3000:]
    assert health.stdout.strip().splitlines()[-1] in ("healthy", "degraded")

    rules = django_admin("observe_rules")
    if rules.returncode == 0:
        assert "groups:" in rules.stdout
    else:
        assert "django-observe[alerting]" in rules.stderr, rules.stderr[-3000:]
        assert "Traceback" not in rules.stderr, rules.stderr[-3000:]
