"""The integration contract: every module of ``django_observe.integrations`` is one row of the table,
implements the protocol, and puts the library back as it was on ``uninstall()``; nothing outside
``integrations/`` patches another library."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import pkgutil
import sys
from pathlib import Path

import pytest

from django_observe import integrations, runtime
from django_observe.integrations import INTEGRATIONS, Deferred
from tests import support

PACKAGE = Path(integrations.__file__).parent
ROOT = PACKAGE.parent
# Modules of integrations/ that are not rows: shared code the rows build on.
NOT_ROWS = {"tasks"}  # TaskObserver: the task lifecycle every queue adapter shares
ROWS = {row.name: row for row in INTEGRATIONS}
MISSING = object()


def row_modules() -> list[str]:
    names = [m.name for m in pkgutil.iter_modules([str(PACKAGE)])]
    return sorted(n for n in names if not n.startswith("_") and n not in NOT_ROWS)


def test_every_module_is_a_row_of_the_table_and_implements_the_protocol():
    modules = row_modules()
    assert len(modules) >= 12
    assert sorted(ROWS) == modules  # one row per module, named after it, and no row without a module
    assert len(ROWS) == len(INTEGRATIONS)
    for name in modules:
        module = importlib.import_module(f"django_observe.integrations.{name}")
        row = module.integration
        listed = ROWS[name]
        # A deferred row stands for the module's own until the project uses the library.
        assert row is (listed.row if isinstance(listed, Deferred) else listed)
        assert isinstance(row.name, str)
        assert list(inspect.signature(row.available).parameters) == ["runtime"]
        assert list(inspect.signature(row.install).parameters) == ["runtime"]
        assert list(inspect.signature(row.uninstall).parameters) == []


# --- nothing outside integrations/ patches another library


def _root_name(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def library_patches(source: str) -> list[str]:
    """Assignments to (and ``setattr``/``delattr`` on) attributes of names imported from another package."""
    tree = ast.parse(source)
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {
                a.asname or a.name.split(".")[0] for a in node.names if not a.name.startswith("django_observe")
            }
        elif (
            isinstance(node, ast.ImportFrom) and not node.level and not (node.module or "").startswith("django_observe")
        ):
            imported |= {a.asname or a.name for a in node.names}
    found = []
    for node in ast.walk(tree):
        targets: list[ast.AST] = []
        if isinstance(node, ast.Assign):
            targets = [
                t for target in node.targets for t in (target.elts if isinstance(target, ast.Tuple) else [target])
            ]
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        elif isinstance(node, ast.Delete):
            targets = node.targets
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("setattr", "delattr"):
            targets = [node.args[0]] if node.args and isinstance(node.args[0], ast.Attribute | ast.Name) else []
            targets = [t if isinstance(t, ast.Attribute) else ast.Attribute(value=t, attr="?") for t in targets]
        for target in targets:
            if isinstance(target, ast.Attribute) and _root_name(target) in imported:
                found.append(f"line {node.lineno}: {ast.unparse(node).splitlines()[0]}")
    return found


def test_the_scan_finds_patches():
    source = (
        "from django.core.cache import CacheHandler\nimport httpx\nfrom django.contrib.auth import middleware as m\n"
        "CacheHandler.create_connection = f\nsetattr(httpx.HTTPTransport, 'handle_request', f)\nm.get_user = g\n"
        "from .runtime import current\ncurrent.x = 1\nself_made = object()\n"
    )
    assert len(library_patches(source)) == 3


def test_no_library_is_patched_outside_integrations():
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        if PACKAGE in path.parents:
            continue
        patches = library_patches(path.read_text())
        if patches:
            found[str(path.relative_to(ROOT.parent))] = patches
    assert found == {}


# --- install, uninstall: the library as it was

# row -> the attributes it replaces: (module, class or None for a module attribute, attribute)
PATCHED = {
    "auth": [
        ("django.contrib.auth", None, "get_user"),
        ("rest_framework.request", "Request", "_authenticate"),
        ("rest_framework.views", "APIView", "check_permissions"),
    ],
    "cache": [("django.core.cache", "CacheHandler", "create_connection")],
    "models": [("django.db.models.deletion", "Collector", "delete")],
    "django_tasks": [("django_tasks.base", "Task", "enqueue"), ("django_tasks.base", "Task", "aenqueue")],
    "http_clients": [
        ("requests.adapters", "HTTPAdapter", "send"),
        ("httpx", "HTTPTransport", "handle_request"),
        ("httpx", "AsyncHTTPTransport", "handle_async_request"),
    ],
    "channels": [("channels.consumer", "AsyncConsumer", "__call__")],
    "rq": [
        ("rq.queue", "Queue", "create_job"),
        ("rq.worker", "Worker", "execute_job"),
        ("rq.worker", "BaseWorker", "perform_job"),
        ("rq.job", "Job", "perform"),
    ],
    "prometheus_files": [("prometheus_client.values", None, "MmapedDict")],
    "llm_clients": [
        ("openai.resources.chat.completions", "Completions", "create"),
        ("openai.resources.chat.completions", "AsyncCompletions", "create"),
        ("openai.resources.responses", "Responses", "create"),
        ("openai.resources.responses", "AsyncResponses", "create"),
        ("anthropic.resources.messages", "Messages", "create"),
        ("anthropic.resources.messages", "AsyncMessages", "create"),
    ],
    "console": [
        ("django.core.cache", "CacheHandler", "create_connection"),
        ("requests.adapters", "HTTPAdapter", "send"),
        ("httpx", "HTTPTransport", "handle_request"),
    ],
}
# row -> the receivers it connects: (module, signal, dispatch_uid)
RECEIVERS = {
    "celery": [
        ("celery.signals", "before_task_publish", "django_observe.on_before_publish"),
        ("celery.signals", "task_prerun", "django_observe.on_prerun"),
        ("celery.signals", "task_postrun", "django_observe.on_postrun"),
        ("celery.signals", "celeryd_init", "django_observe.on_worker_init"),
        ("celery.signals", "setup_logging", "django_observe.on_setup_logging"),
    ],
    "django_tasks": [
        ("django_tasks.signals", "task_enqueued", "django_observe.django_tasks.on_enqueued"),
        ("django_tasks.signals", "task_started", "django_observe.django_tasks.on_started"),
        ("django_tasks.signals", "task_finished", "django_observe.django_tasks.on_finished"),
    ],
    "db": [("django.db.backends.signals", "connection_created", "django_observe.queries")],
    "sqlcomment": [("django.db.backends.signals", "connection_created", "django_observe.sqlcomment")],
    "models": [("django.db.models.signals", "post_save", "django_observe_model_saved")],
    "console": [
        ("django.db.backends.signals", "connection_created", "django_observe.console.queries"),
        ("celery.signals", "task_prerun", "django_observe.console._celery_prerun"),
    ],
}
# Rows that patch nothing of a library: they hand their hooks what the runtime built.
BINDS_ONLY = {"genai", "gunicorn"}


def ours(value: object) -> bool:
    """Defined in django_observe (``functools.wraps`` copies ``__module__``, not the code); a class by its
    module."""
    if isinstance(value, type):
        return value.__module__.startswith("django_observe.")
    code = getattr(value, "__code__", None)
    return code is not None and f"{Path('django_observe')}" in code.co_filename


def _owner(module: str, owner: str | None) -> object:
    found = support.require_module(module)
    return found if owner is None else getattr(found, owner)


def _attributes(name: str) -> dict[tuple[object, str], object]:
    return {(_owner(m, o), a): vars(_owner(m, o)).get(a, MISSING) for m, o, a in PATCHED.get(name, [])}


def _connected(name: str) -> list[bool]:
    found = []
    for module, signal, uid in RECEIVERS.get(name, []):
        receivers = getattr(support.require_module(module), signal).receivers
        found.append(any(r[0][0] == uid for r in receivers))
    return found


def _everything_on(observe) -> runtime.Runtime:
    observe(TRACING_SQL_COMMENTER=True, CORRELATION_PROPAGATE=True, METRICS_CACHE=True, METRICS_MODELS=True)
    rt = runtime.get_runtime()
    assert rt.metrics is not None and rt.sql_comments is not None and rt.outbound is not None
    return dataclasses.replace(rt, console=object())  # the console row wires its hooks for any recorder


def test_every_row_is_checked_below():
    assert set(ROWS) == set(PATCHED) | set(RECEIVERS) | BINDS_ONLY


@pytest.mark.parametrize("name", sorted(set(PATCHED) | set(RECEIVERS)))
def test_install_then_uninstall_puts_the_library_back(name, observe):
    for module, _, _ in PATCHED.get(name, []) + RECEIVERS.get(name, []):
        support.require_module(module)
    rt = _everything_on(observe)
    row = ROWS[name]
    for other in reversed(INTEGRATIONS):  # last installed, first removed: rows may wrap the same attribute
        other.uninstall()
    original = _attributes(name)
    assert not any(_connected(name))
    for (owner, attribute), value in original.items():
        assert not ours(value), (owner, attribute)
    try:
        row.install(rt)
        patched = _attributes(name)
        for key, value in patched.items():
            assert value is not original[key] and ours(value), key
        assert all(_connected(name))
        row.install(rt)  # idempotent: nothing wrapped twice
        assert _attributes(name) == patched
        row.uninstall()
        assert _attributes(name) == original
        assert not any(_connected(name))
    finally:
        row.uninstall()
        for other in INTEGRATIONS:
            if other.available(runtime.get_runtime()):
                other.install(runtime.get_runtime())


# --- deferred rows: the module is imported only for a project that uses the library

DEFERRED = [row for row in INTEGRATIONS if isinstance(row, Deferred)]


def test_the_rows_for_libraries_a_project_may_not_use_are_deferred():
    assert {row.name for row in DEFERRED} >= {"celery", "django_tasks", "rq", "channels", "console", "gunicorn"}


@pytest.mark.parametrize("row", DEFERRED, ids=lambda row: row.name)
def test_a_deferred_row_answers_as_its_module_does(row, observe):
    observe()
    rt = runtime.get_runtime()
    assert row.available(rt) == row.row.available(rt)


@pytest.mark.parametrize("row", DEFERRED, ids=lambda row: row.name)
def test_uninstalling_a_deferred_row_never_imported_imports_nothing(row, monkeypatch):
    monkeypatch.delitem(sys.modules, row.module)  # as in a process that never imported it
    row.uninstall()
    assert row.module not in sys.modules


def test_the_llm_row_is_used_for_the_sdks_it_patches():
    # integrations._uses decides whether to import the llm_clients row from its own list of SDK names: an SDK
    # patched there but missing from that list would never be measured in a project that uses only it.
    from django_observe.integrations import _uses, llm_clients

    assert tuple(sdk.name for sdk in llm_clients.SDKS) == _uses.LLM_SDKS
