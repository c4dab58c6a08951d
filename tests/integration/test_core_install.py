"""The core install (no extras) works: imports of Celery, Redis or PyYAML are blocked in a subprocess."""

import json
import subprocess

from tests import support

PROBE = """
import sys

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("celery", "redis", "kombu", "billiard"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, Block())
import json, django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.test import Client
client = Client()
health = client.get("/health")
print(json.dumps({"healthz": client.get("/healthz").status_code, "health": health.status_code,
                  "checks": sorted(health.json()["checks"]), "ping": client.get("/ping").status_code,
                  "celery_loaded": any(m.startswith(("celery", "redis")) for m in sys.modules)}))
"""


def test_core_install_serves_health_without_celery_or_redis(tmp_path):
    env = support.project_env(
        DJANGO_SETTINGS_MODULE="benchmarks.project.settings",
        BENCH_CONFIG="observe",
        BENCH_DB=str(tmp_path / "db.sqlite3"),
        METRICS_PORT="0",
    )
    result = subprocess.run(
        [support.PYTHON, "-c", PROBE], cwd=support.ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {
        "healthz": 200,
        "health": 200,
        "checks": ["cache", "database", "disk", "memory", "migrations"],
        "ping": 200,
        "celery_loaded": False,
    }


YAML_BLOCKED = """
import sys

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "yaml":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, Block())
from django.core.management import execute_from_command_line
execute_from_command_line(["manage.py", "observe_rules"])
"""


def test_observe_rules_without_pyyaml_names_the_extra():
    result = subprocess.run(
        [support.PYTHON, "-c", YAML_BLOCKED],
        cwd=support.ROOT,
        env=support.project_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "CommandError" in result.stderr and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "pip install 'django-observe[alerting]'" in result.stderr
