"""Integrations take narrow recorders from the runtime they are installed for (a do-nothing one when the
subsystem is off); only the entry points, the wiring and a few documented hooks look the runtime up when
they run (#29)."""

import ast
import types
from pathlib import Path

from prometheus_client import CollectorRegistry

from django_observe import authorization, conf, runtime, wiring
from django_observe.integrations import auth as auth_row
from django_observe.integrations import genai as genai_row
from django_observe.metrics.auth import record_authorization
from django_observe.requestinfo import RequestState, request_state
from django_observe.tracing import agents

PACKAGE = Path(wiring.__file__).parent
# Modules that look the runtime up when they run (runtime.current() / get_runtime()), and why.
LOOKS_UP = {
    "runtime.py": "defines them",
    "wiring.py": "builds and replaces the runtime",
    "middleware.py": "takes its collaborators when Django builds it",
    "checks.py": "system checks run on demand, after a rebuild too",
    "health/views.py": "a view",
    "metrics/views.py": "a view",
    "management/commands/observe_health.py": "a command",
    "console/routers.py": "the console's database router, consulted by Django",
    "console/checks.py": "a system check",
    "metrics/business.py": "business metrics are declared at import time, before any runtime exists",
    "metrics/otlp.py": "the pusher's thread reads the collectors of the runtime installed when it pushes",
    "integrations/http_clients.py": "outbound_headers() is public and works without the row installed",
}


def lookups(tree: ast.AST) -> int:
    return sum(
        1
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and (getattr(node.func, "id", None) or getattr(node.func, "attr", None)) in ("current", "get_runtime")
        and not (isinstance(node.func, ast.Attribute) and getattr(node.func.value, "id", "") == "queries")
    )


def test_only_the_documented_modules_look_the_runtime_up():
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = str(path.relative_to(PACKAGE))
        if name == "queries.py":
            continue  # its own current(): the statements of the current request
        count = lookups(ast.parse(path.read_text()))
        if count:
            found[name] = count
    assert set(found) == set(LOOKS_UP), found


def test_no_integration_guards_on_the_runtime_metrics_outside_available():
    guards = []
    for path in sorted((PACKAGE / "integrations").glob("*.py")):
        tree = ast.parse(path.read_text())
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef) or function.name == "available":
                continue
            for node in ast.walk(function):
                if isinstance(node, ast.Compare) and ast.unparse(node.left).endswith("runtime.metrics"):
                    guards.append(f"{path.name}:{node.lineno} {ast.unparse(node)}")
    assert guards == []


def _built(**options):
    config = conf.load_config(types.SimpleNamespace(DEBUG=False, DJANGO_OBSERVE=options), environ={})
    return wiring.build_runtime(config, role="command", databases={}, caches={}, registry=CollectorRegistry())


def _timed(rt, mechanism, decision):
    labels = {"mechanism": mechanism, "decision": decision}
    return rt.metrics.registry.get_sample_value("authorization_duration_seconds_count", labels) or 0.0


def test_authorization_records_into_the_runtime_the_auth_row_was_installed_for():
    installed = runtime.get_runtime()
    built = _built()
    before = _timed(installed, "custom", "allow")
    try:
        auth_row.integration.install(built)
        record_authorization("custom", "allow", 0.25)
        with authorization("custom") as timer:
            timer.decision = "allow"
        assert _timed(built, "custom", "allow") == 2
        assert _timed(installed, "custom", "allow") == before
    finally:
        auth_row.integration.install(installed)
        built.metrics.close()
    record_authorization("custom", "allow", 0.25)
    assert _timed(installed, "custom", "allow") == before + 1


def test_with_metrics_off_authorization_records_nothing_and_still_marks_the_request(observe):
    observe(METRICS_ENABLED=False)
    state = RequestState()
    token = request_state.set(state)
    try:
        with authorization("custom") as timer:
            timer.decision = "allow"
    finally:
        request_state.reset(token)
    assert state.authorized


def test_genai_binds_a_do_nothing_recorder_with_metrics_off(observe):
    observe(METRICS_ENABLED=False)
    assert agents._bound.recorder is not None
    with agents.invoke_agent("planner"):
        pass  # recorded nowhere, no error
    genai_row.integration.uninstall()
    try:
        assert agents._bound.recorder is agents.NO_DURATIONS
    finally:
        genai_row.integration.install(runtime.get_runtime())
