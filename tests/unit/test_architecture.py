"""The shape of the package: imports point one way, and only the wiring reads Django's settings."""

import ast
import dataclasses
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Modules that may read django.conf.settings: the configuration loader and the wiring on top.
READS_SETTINGS = {"django_observe.apps", "django_observe.wiring", "django_observe.integrations.gunicorn"}


def module_name(base: Path, path: Path) -> str:
    parts = list(path.relative_to(base).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports_of(path: Path, name: str, known: set[str]) -> set[str]:
    """Every module of ``known`` that ``path`` imports, at module level or inside functions (a deferred
    import is still a dependency), except under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text())
    skip = {id(n) for node in ast.walk(tree) if is_type_checking(node) for n in ast.walk(node)}
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                module = ".".join(package[: len(package) - node.level + 1] + ([module] if module else []))
            subs = [f"{module}.{a.name}" for a in node.names if f"{module}.{a.name}" in known]
            targets = subs + ([module] if len(subs) < len(node.names) else [])
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph(top: str) -> dict[str, set[str]]:
    files = {module_name(ROOT, p): p for p in (ROOT / top).rglob("*.py")}
    known = set(files)
    return {name: imports_of(path, name, known) for name, path in files.items()}


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in edges:
        if v not in index:
            visit(v)
    return found


@pytest.mark.parametrize("top", ["django_observe", "testproject", "benchmarks"])
def test_no_import_circles(top):
    assert circles(graph(top)) == []


def test_the_checker_finds_a_deferred_circle(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text("from . import b\n")
    (tmp_path / "pkg" / "b.py").write_text("def f():\n    from .a import x\n")
    files = {module_name(tmp_path, p): p for p in (tmp_path / "pkg").rglob("*.py")}
    edges = {n: imports_of(p, n, set(files)) for n, p in files.items()}
    assert circles(edges) == [["pkg.a", "pkg.b"]]


def test_runtime_imports_nothing_of_the_package_at_run_time():
    edges = graph("django_observe")
    assert edges["django_observe.runtime"] == set()


def test_only_the_wiring_reads_django_settings():
    readers = set()
    for path in (ROOT / "django_observe").rglob("*.py"):
        name = module_name(ROOT, path)
        if name.startswith("django_observe.conf"):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            imported = isinstance(node, ast.ImportFrom) and node.module == "django.conf"
            if imported and any(alias.name == "settings" for alias in node.names):
                readers.add(name)
    assert readers <= READS_SETTINGS, sorted(readers - READS_SETTINGS)


def test_every_public_name_resolves():
    import django_observe

    for name in django_observe.__all__:
        assert getattr(django_observe, name) is not None, name
    with pytest.raises(AttributeError):
        django_observe.HealthRunner  # noqa: B018 - internal, not re-exported


def _package_imports(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("django_observe")):
            found.append(ast.unparse(node))
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if alias.name.startswith("django_observe")]
    return found


def test_the_checker_sees_imports_under_type_checking():
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .conf import ObserveConfig\n")
    assert _package_imports(tree) == ["from .conf import ObserveConfig"]


def test_runtime_imports_nothing_of_the_package_even_for_annotations():
    """runtime.py sits on the ground floor: its fields are typed with protocols of its own (#29)."""
    tree = ast.parse((ROOT / "django_observe" / "runtime.py").read_text())
    assert _package_imports(tree) == []


def test_metrics_state_has_no_field_typed_any():
    from django_observe.metrics.setup import MetricsState

    loose = {f.name: f.type for f in dataclasses.fields(MetricsState) if "Any" in str(f.type)}
    assert loose == {}
