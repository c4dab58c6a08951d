"""A project pays only for what it uses (#30): the optional libraries it does not use stay out of its process,
and its module families and memory stay within the committed baseline.

Each probe is a fresh process of the benchmark project (benchmarks/project, SQLite, locmem cache, no Celery,
no Redis, no YAML, no HTTP client of its own) with django_observe installed; it starts Django and serves
``/ping``, ``/db-cache``, the health endpoints and a 404, then reports what it loaded. Every optional library
below is installed in the test environment (``pip install -e '.[all,dev]'``), so "not imported" is a real
decision of django_observe, not an absence.

The baseline (``benchmarks/results/footprint-baseline.json``, recorded by
``python -m benchmarks.footprint --write-baseline``) holds, per configuration, the module families outside the
standard library and the resident memory after 2,000 requests. The check fails when a change loads a family
the baseline does not have, or adds more than 10% memory (scaled by bare Django's memory measured in the same
run, so another Python or Django version compares fairly). No wall clock is involved.
"""

import json

import pytest

from benchmarks import footprint
from benchmarks.configs import environment
from tests import support

pytestmark = pytest.mark.integration

# The library as users name it -> its import packages (and those it brings along).
LIBRARIES = {
    "Celery": ("celery", "kombu", "billiard", "amqp"),
    "Redis": ("redis",),
    "psycopg": ("psycopg", "psycopg2"),
    "requests": ("requests", "urllib3"),
    "httpx": ("httpx",),
    "PyYAML": ("yaml",),
    "DRF": ("rest_framework",),
    "OpenTelemetry": ("opentelemetry",),
    "openai": ("openai",),
}
# With tracing on, the OTLP/HTTP span exporter sends with requests, and OpenTelemetry is what tracing is.
NEEDED_BY_TRACING = {"requests", "OpenTelemetry"}

PROBE = """
import json, sys
from benchmarks import inprocess
inprocess.setup_django()
for view in ("/ping", "/db-cache", "/livez", "/readyz", "/health", "/missing"):
    inprocess.request_driver(view, setup=False)()
with open(sys.argv[1], "w") as out:
    json.dump(sorted(sys.modules), out)
"""


def _probe(config: str, tmp_path_factory) -> set[str]:
    folder = tmp_path_factory.mktemp(config)
    env = environment(config, str(folder / "db.sqlite3"))
    footprint.migrate(env)
    support.run_python(PROBE, str(folder / "modules.json"), env=env, timeout=300)
    return set(json.loads((folder / "modules.json").read_text()))


@pytest.fixture(scope="module")
def tracing_off(tmp_path_factory):
    return _probe("observe", tmp_path_factory)


@pytest.fixture(scope="module")
def tracing_on(tmp_path_factory):
    support.require_module("opentelemetry.sdk")
    return _probe("observe_otel", tmp_path_factory)


def _loaded(modules: set[str], packages: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if m.split(".", 1)[0] in packages)


@pytest.mark.parametrize("library", sorted(LIBRARIES))
def test_a_project_not_using_it_does_not_import_it(library, tracing_off):
    packages = LIBRARIES[library]
    support.require_module(packages[0])  # installed, so staying out is django_observe's doing
    assert "django_observe.wiring" in tracing_off  # the probe ran django_observe
    assert _loaded(tracing_off, packages) == [], f"{library} imported by a project that does not use it"


@pytest.mark.parametrize("library", sorted(set(LIBRARIES) - NEEDED_BY_TRACING))
def test_with_tracing_on_a_project_not_using_it_does_not_import_it(library, tracing_on):
    packages = LIBRARIES[library]
    support.require_module(packages[0])
    assert "opentelemetry.sdk.trace" in tracing_on  # the probe traced
    assert _loaded(tracing_on, packages) == [], f"{library} imported by a traced project that does not use it"


# Our own code for what the benchmark project does not use (no Celery, RQ, Channels or console; tracing off; no
# OTLP metrics): the row modules and subsystems stay unimported too.
OURS_UNUSED = (
    "django_observe.integrations.celery",
    "django_observe.integrations.tasks",
    "django_observe.integrations.rq",
    "django_observe.integrations.channels",
    "django_observe.integrations.console",
    "django_observe.console.recorder",
    "django_observe.integrations.gunicorn",
    "django_observe.tracing.setup",
    "django_observe.metrics.otlp",
    "django_observe.logging.otlp",
    "django_observe.otlp_exporters",
)


@pytest.mark.parametrize("module", OURS_UNUSED)
def test_our_code_for_what_the_project_does_not_use_is_not_imported(module, tracing_off):
    assert "django_observe.wiring" in tracing_off
    assert module not in tracing_off


def test_module_families_and_memory_within_the_baseline():
    baseline = json.loads(footprint.BASELINE.read_text())["results"]
    configs = ["bare", "observe"] + (["observe_otel"] if "observe_otel" in baseline else [])
    measured = footprint.inprocess(configs, rounds=1, requests=2000)
    assert set(measured) == set(configs), measured.keys()
    assert measured["observe"]["rss"] > measured["bare"]["rss"]  # the figures are real
    problems = footprint.check(baseline, measured)
    assert problems == [], "\n".join(problems) + "\n(after a deliberate change: benchmarks/footprint.py --help)"


def test_the_check_fails_on_a_new_family_or_ten_percent_more_memory():
    baseline = {
        "bare": {"rss": 100, "families": {"django": 1}},
        "observe": {"rss": 200, "families": {"django": 1, "structlog": 1}},
    }
    same = {"bare": {"rss": 100, "families": {"django": 1}}, "observe": dict(baseline["observe"])}
    assert footprint.check(baseline, same) == []
    grown = {**same, "observe": {"rss": 221, "families": {"django": 1, "structlog": 1, "yaml": 3}}}
    problems = footprint.check(baseline, grown)
    assert len(problems) == 2, problems
    assert "yaml" in problems[0] and "RSS" in problems[1]
    # Another interpreter whose bare Django is 20% bigger: the allowance scales with it.
    scaled = {"bare": {"rss": 120, "families": {"django": 1}}, "observe": {"rss": 250, "families": {"django": 1}}}
    assert footprint.check(baseline, scaled) == []
