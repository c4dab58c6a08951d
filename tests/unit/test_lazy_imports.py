"""Libraries whose package import loads optional parts we do not use, imported without them; the parts still
load, as before, for a project that asks for them.

- django-health-check: its ``__init__`` imports its built-in checks, which import dnspython and redis;
- structlog: its ``__init__`` imports its Twisted support, which imports Twisted when installed;
- django.contrib.auth's middleware module (its views, forms and django.contrib.sites), for a project that does
  not list the middleware;
- importlib.abc (and importlib.resources with it), which our import hooks do not need.
"""

import json
import subprocess
import sys

from tests import support

PROBE = """
import json, os, sys
import django
django.setup()
import django_observe.health
# django.contrib.auth.middleware: this project lists django.contrib.auth but not its middleware (the auth row
# wraps django.contrib.auth.get_user, which the middleware calls; importing the middleware loads auth's views).
# importlib.resources: importlib.abc imports it, for ABCs an import hook does not need to subclass.
optional = (
    "redis", "dns", "opentelemetry", "health_check.checks", "django.contrib.auth.middleware", "importlib.resources"
)
out = {"after_ours": sorted(m for m in optional if m in sys.modules)}
import health_check
from django_observe.health import Database
out["subclass"] = issubclass(Database, health_check.HealthCheck)
from health_check import DNS, Cache
out["names"] = [DNS.__name__, Cache.__name__, health_check.__version__ == health_check._version.__version__]
import health_check.views
out["views"] = hasattr(health_check.views, "HealthCheckView")
try:
    health_check.no_such_name
except AttributeError as exc:
    out["missing"] = str(exc)
print(json.dumps(out))
"""


def test_our_checks_load_no_client_library_and_health_check_stays_whole(tmp_path):
    env = support.project_env(
        DJANGO_SETTINGS_MODULE="benchmarks.project.settings",
        BENCH_CONFIG="observe",
        BENCH_DB=str(tmp_path / "db.sqlite3"),
        METRICS_PORT="0",
    )
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=support.ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["after_ours"] == []
    assert out["subclass"] is True
    assert out["names"] == ["DNS", "Cache", True]
    assert out["views"] is True
    assert "no attribute 'no_such_name'" in out["missing"]


STRUCTLOG_PROBE = """
import json, sys
import django_observe.logging
out = {"loaded": sorted(m for m in ("twisted", "structlog.twisted") if m in sys.modules)}
import structlog
out["lazy"] = structlog.twisted.__name__
out["now"] = sorted(m for m in ("twisted", "structlog.twisted") if m in sys.modules)
from structlog import twisted
out["same"] = twisted is structlog.twisted
out["version"] = bool(structlog.__version__)
print(json.dumps(out))
"""


def test_structlog_is_imported_without_twisted_which_still_loads_on_demand():
    try:
        import twisted  # noqa: F401
    except ImportError:
        support.missing("Twisted is not installed (pip install -e '.[all]': daphne brings it)")
    result = subprocess.run([sys.executable, "-c", STRUCTLOG_PROBE], cwd=support.ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out == {
        "loaded": [],
        "lazy": "structlog.twisted",
        "now": ["structlog.twisted", "twisted"],
        "same": True,
        "version": True,
    }


GREENLET_PROBE = """
import json, sys
import django_observe.logging
import structlog.threadlocal
print(json.dumps({"greenlet": "greenlet" in sys.modules, "storage": structlog.threadlocal.ThreadLocal.__module__}))
"""


def test_structlog_is_imported_without_greenlet():
    """The deprecated structlog.threadlocal would load greenlet (1.3 MB) wherever it is installed."""
    support.require_module("greenlet")
    result = subprocess.run([sys.executable, "-c", GREENLET_PROBE], cwd=support.ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out == {"greenlet": False, "storage": "_thread"}
