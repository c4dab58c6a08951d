"""The suite's own rules (CONTRIBUTING.md, "Writing tests"), checked on every test file under tests/.

1. A test needs what it needs through tests/support.py's ``require_*`` helpers (skip locally, fail with
   ``CI=true``); no direct ``pytest.skip``/``importorskip``/``xfail`` or skip marks. With ``CI=true`` a skip not in
   tests/allowed_skips.txt fails the run (tests/ci_skips.py): proved here by running pytest in a subprocess.
2. No vacuous pass: every test reaches an assertion that no ``if``/``except``/``match`` can route around, and no
   test returns early.
3. No wall-clock threshold: no assertion compares a measured duration; every wait has a generous deadline.

How helpers count (rule 2): a call counts as an assertion when it calls a function defined anywhere under
tests/ (``support.wait_until``, a module's own ``check_...``, a method) that itself asserts, transitively; and
``pytest.raises``/``pytest.warns``/``pytest.fail``, ``raise AssertionError``, ``.assert_*()`` mock methods and
``assert_*`` functions. A helper that only raises another error (a server that did not start) is setup, not a
check, and does not count. Helpers are matched by name, so keep asserting helpers' names distinct.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests import ci_skips, support

TESTS = support.ROOT / "tests"
# The helpers that implement the rules may call pytest.skip/fail themselves.
SKIP_HELPERS = {TESTS / "support.py", TESTS / "ci_skips.py"}
SKIP_CALLS = {"skip", "importorskip", "xfail"}
SKIP_MARKS = {"skip", "skipif", "xfail"}
TIMERS = {"monotonic", "monotonic_ns", "perf_counter", "perf_counter_ns", "time", "time_ns", "process_time"}
WAITS = {"wait_until", "wait_for", "wait_for_port", "wait_processes_loaded", "wait_worker_ready", "wait_for_spans"}
MIN_DEADLINE = 15.0  # seconds: a wait's deadline on a loaded 2-core machine


@dataclass(frozen=True)
class Source:
    path: Path
    tree: ast.Module

    @property
    def name(self) -> str:
        return str(self.path.relative_to(support.ROOT))


def sources() -> list[Source]:
    found = []
    for path in sorted(TESTS.rglob("*.py")):
        if ".venv" in path.parts or "__pycache__" in path.parts:
            continue
        found.append(Source(path, ast.parse(path.read_text(), str(path))))
    return found


SOURCES = sources()


def dotted(node: ast.AST) -> str:
    """``pytest.mark.skipif`` for the expression ``pytest.mark.skipif`` (``""`` for anything else)."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def called_name(call: ast.Call) -> str:
    """The last name of what is called: ``wait_until`` for ``support.wait_until(...)``."""
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return ""


def own_nodes(function: ast.AST) -> Iterator[ast.AST]:
    """The nodes of a function's body, not those of functions or classes defined inside it."""
    stack = list(ast.iter_child_nodes(function))
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
            stack.extend(ast.iter_child_nodes(node))


def collected_tests(tree: ast.Module) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test"):
            yield node
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and item.name.startswith("test"):
                    yield item


# --- 1. needing things


def test_no_direct_skips():
    found = set()
    for source in SOURCES:
        if source.path in SKIP_HELPERS:
            continue
        for node in ast.walk(source.tree):
            name = dotted(node)
            if name in {f"pytest.{call}" for call in SKIP_CALLS} | {f"pytest.mark.{mark}" for mark in SKIP_MARKS}:
                found.add(f"{source.name}:{node.lineno}: {name}")
    found = sorted(found)
    assert not found, (
        "Tests skip directly; a direct skip passes silently in CI. Ask for what the test needs with "
        "tests/support.py's require_service/require_binary/require_module/require_ipv6/require_root/require_fork "
        "(or support.missing(reason) for anything else): they skip locally and fail with CI=true. "
        "See CONTRIBUTING.md, 'Writing tests'.\n" + "\n".join(found)
    )


def test_the_allowlist_is_well_formed():
    entries = ci_skips.read_allowlist(ci_skips.DEFAULT_ALLOWLIST)
    assert all(entry.reason for entry in entries)


def run_pytest(*args: str, cwd: Path, ci: bool, extra_path: Path | None = None, **env: str):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_") and k != "CI"}
    environ["PYTHONPATH"] = os.pathsep.join(str(p) for p in (extra_path, support.ROOT) if p)
    environ.update(env)
    if ci:
        environ["CI"] = "true"
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args]
    return subprocess.run(argv, cwd=cwd, env=environ, capture_output=True, text=True, timeout=300)


BLOCKER = """
import sys


class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name == "django_tasks_db" or name.startswith("django_tasks_db."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by test_suite_honesty)")
        return None


sys.meta_path.insert(0, Blocked())
"""


def test_ci_fails_naming_the_test_when_an_optional_test_dependency_is_missing(tmp_path):
    (tmp_path / "block_django_tasks_db.py").write_text(BLOCKER)
    args = ("-p", "block_django_tasks_db", "tests/integration/test_django_tasks_e2e.py")
    ci = run_pytest(*args, cwd=support.ROOT, ci=True, extra_path=tmp_path)
    output = ci.stdout + ci.stderr
    assert ci.returncode == 1, output
    assert "ERROR tests/integration/test_django_tasks_e2e.py::test_" in output, output
    assert "'django_tasks_db' cannot be imported" in output
    assert "CI=true" in output
    local = run_pytest(*args, cwd=support.ROOT, ci=False, extra_path=tmp_path)
    assert local.returncode == 0, local.stdout + local.stderr
    assert " skipped" in local.stdout and " passed" not in local.stdout


SKIPPING = """
import pytest


def test_passes():
    assert 1 + 1 == 2


def test_skips():
    pytest.skip("the thing is not here")
"""


def test_ci_fails_on_a_skip_the_allowlist_does_not_name(tmp_path):
    (tmp_path / "test_skipping.py").write_text(SKIPPING)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    allowlist = tmp_path / "allowed.txt"
    allowlist.write_text("# nothing allowed\n")
    args = ("-p", "tests.ci_skips", "-p", "no:django", "test_skipping.py")

    unlisted = run_pytest(*args, cwd=tmp_path, ci=True, OBSERVE_ALLOWED_SKIPS=str(allowlist))
    assert unlisted.returncode == 1, unlisted.stdout + unlisted.stderr
    assert "UNALLOWED SKIP test_skipping.py::test_skips - the thing is not here" in unlisted.stdout
    assert "tests/allowed_skips.txt" in unlisted.stdout and "require_" in unlisted.stdout  # says how to fix

    local = run_pytest(*args, cwd=tmp_path, ci=False, OBSERVE_ALLOWED_SKIPS=str(allowlist))
    assert local.returncode == 0 and "UNALLOWED" not in local.stdout, local.stdout

    allowlist.write_text("test_skipping.py::test_skips  # the thing cannot exist in CI\n")
    listed = run_pytest(*args, cwd=tmp_path, ci=True, OBSERVE_ALLOWED_SKIPS=str(allowlist))
    assert listed.returncode == 0, listed.stdout + listed.stderr

    allowlist.write_text("test_skipping.py::test_skips\n")  # no reason
    refused = run_pytest(*args, cwd=tmp_path, ci=True, OBSERVE_ALLOWED_SKIPS=str(allowlist))
    assert refused.returncode != 0 and "needs a test id and a reason" in refused.stdout + refused.stderr


# --- 2. no vacuous pass

# Calls that check something wherever they appear.
CHECKING_CALLS = {"raises", "warns", "fail", "deprecated_call"}


def asserting_helpers() -> set[str]:
    """Names of the functions under tests/ that assert (directly or through another such function)."""
    functions: dict[str, list[ast.AST]] = {}
    for source in SOURCES:
        for node in ast.walk(source.tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                functions.setdefault(node.name, []).append(node)
    asserting: set[str] = set()
    changed = True
    while changed:
        changed = False
        for name, defs in functions.items():
            if name not in asserting and any(checks(node, asserting) for d in defs for node in own_nodes(d)):
                asserting.add(name)
                changed = True
    return asserting


def checks(node: ast.AST, helpers: set[str]) -> bool:
    """Whether this one node is an assertion (not looking into its children)."""
    if isinstance(node, ast.Assert):
        return True
    if isinstance(node, ast.Raise) and node.exc is not None:
        exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
        return dotted(exc) == "AssertionError"
    if isinstance(node, ast.Call):
        name = called_name(node)
        return (
            name in CHECKING_CALLS
            and dotted(node.func).startswith("pytest.")
            or name.startswith("assert")
            or name in helpers
        )
    return False


UNCONDITIONAL_PARENTS = (ast.With, ast.AsyncWith, ast.For, ast.AsyncFor, ast.While, ast.Try, ast.Expr, ast.Assign)


def unconditional_statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """The statements of a body that run whenever the body runs (into with/for/try bodies, not if/except)."""
    for statement in body:
        if not isinstance(statement, ast.If):
            yield statement
        if isinstance(statement, ast.With | ast.AsyncWith | ast.For | ast.AsyncFor | ast.While):
            yield from unconditional_statements(statement.body)
        elif isinstance(statement, ast.Try):
            yield from unconditional_statements(statement.body)
            yield from unconditional_statements(statement.finalbody)
        elif isinstance(statement, ast.If) and branch_checks(statement.body) and branch_checks(statement.orelse):
            yield statement  # an assertion on both branches is reached either way


def branch_checks(body: list[ast.stmt]) -> bool:
    helpers = HELPERS
    return bool(body) and any(
        checks(node, helpers) for stmt in unconditional_statements(body) for node in [stmt, *own_nodes(stmt)]
    )


HELPERS = asserting_helpers()


def statement_checks(statement: ast.stmt, helpers: set[str]) -> bool:
    if isinstance(statement, ast.If):
        return True  # yielded only when both branches check
    # The statement itself and the expressions in it, not the bodies of compound statements.
    if isinstance(statement, ast.With | ast.AsyncWith):
        nodes = [n for item in statement.items for n in ast.walk(item)]
    elif isinstance(statement, ast.For | ast.AsyncFor):
        nodes = [*ast.walk(statement.iter)]
    elif isinstance(statement, ast.While):
        nodes = [*ast.walk(statement.test)]
    elif isinstance(statement, ast.Try):
        nodes = []
    else:
        nodes = [statement, *own_nodes(statement)]
    return any(checks(node, helpers) for node in nodes)


def test_every_test_reaches_an_assertion():
    vacuous = []
    for source in SOURCES:
        for function in collected_tests(source.tree):
            if not any(statement_checks(s, HELPERS) for s in unconditional_statements(function.body)):
                vacuous.append(f"{source.name}:{function.lineno}: {function.name}")
    assert not vacuous, (
        "These tests can pass without checking anything: no assert, pytest.raises/fail/warns or asserting helper "
        "is reached unless an if/except/match lets it. Assert something unconditionally (if the test needs an "
        "optional thing, ask for it with a tests/support.py require_* helper instead of branching on it). "
        "See CONTRIBUTING.md, 'Writing tests'.\n" + "\n".join(vacuous)
    )


def test_no_test_returns_early():
    found = []
    for source in SOURCES:
        for function in collected_tests(source.tree):
            found += [
                f"{source.name}:{n.lineno}: {function.name}" for n in own_nodes(function) if isinstance(n, ast.Return)
            ]
    assert not found, (
        "A test returns: whatever follows the return is never checked, and pytest reports a pass. Remove the "
        "return; for a missing optional thing use a tests/support.py require_* helper (skip locally, fail in CI).\n"
        + "\n".join(found)
    )


# --- 3. no wall-clock threshold


def timer_call(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and called_name(node) in TIMERS and dotted(node.func).startswith("time")


def timed_names(function: ast.AST) -> set[str]:
    """Names assigned, in this function, from an expression that reads a clock (transitively)."""
    timed: set[str] = set()
    changed = True
    assignments = [n for n in ast.walk(function) if isinstance(n, ast.Assign | ast.AnnAssign | ast.AugAssign)]
    while changed:
        changed = False
        for node in assignments:
            value = node.value
            if value is None or not any(
                timer_call(n) or (isinstance(n, ast.Name) and n.id in timed) for n in ast.walk(value)
            ):
                continue
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            pairs = []
            for target in targets:
                if (
                    isinstance(target, ast.Tuple)
                    and isinstance(value, ast.Tuple)
                    and len(target.elts) == len(value.elts)
                ):
                    pairs += zip(target.elts, value.elts, strict=True)  # a, b = x, time.monotonic(): only b
                else:
                    pairs.append((target, value))
            for target, part in pairs:
                if not reads_clock(part, timed):
                    continue
                for name in ast.walk(target):
                    if isinstance(name, ast.Name) and name.id not in timed:
                        timed.add(name.id)
                        changed = True
    return timed


def reads_clock(node: ast.AST, timed: set[str]) -> bool:
    return any(timer_call(n) or (isinstance(n, ast.Name) and n.id in timed) for n in ast.walk(node))


def literal_seconds(node: ast.AST | None, constants: dict[str, float] | None = None) -> float | None:
    """The value of a number, a module constant, or arithmetic on those (``TIMEOUT + 1``); None otherwise."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return float(node.value)
    if isinstance(node, ast.Name) and constants and node.id in constants:
        return constants[node.id]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub | ast.Mult | ast.Div):
        left, right = literal_seconds(node.left, constants), literal_seconds(node.right, constants)
        if left is not None and right is not None and not (isinstance(node.op, ast.Div) and right == 0):
            ops = {ast.Add: float.__add__, ast.Sub: float.__sub__, ast.Mult: float.__mul__, ast.Div: float.__truediv__}
            return ops[type(node.op)](left, right)
    return None


def module_constants(tree: ast.Module) -> dict[str, float]:
    constants: dict[str, float] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            value = literal_seconds(node.value, constants)
            if value is not None:
                constants[node.targets[0].id] = value
    return constants


# Names that hold a measured duration or a wall-clock reading (`r.seconds`, `elapsed`, `took_ms`, `latency`).
DURATION_NAME = re.compile(r"(^|_)(elapsed|took|latency|seconds|started|finished)(_|$)|_at$|^(first|later)_?run")


def duration_named(node: ast.AST) -> bool:
    for n in ast.walk(node):
        name = n.attr if isinstance(n, ast.Attribute) else n.id if isinstance(n, ast.Name) else None
        if name and DURATION_NAME.search(name) and not name.isupper():
            return True
    return False


def wait_deadline(call: ast.Call, constants: dict[str, float] | None = None) -> float | None:
    """The literal deadline of a wait helper's call, if it has one."""
    for keyword in call.keywords:
        if keyword.arg == "timeout":
            return literal_seconds(keyword.value, constants)
    positional = {"wait_until": 1, "wait_for_port": 2, "wait_for": 2, "wait_processes_loaded": 2}
    index = positional.get(called_name(call))
    if index is not None and len(call.args) > index:
        return literal_seconds(call.args[index], constants)
    return None


def limit_like(node: ast.AST, constants: dict[str, float]) -> bool:
    """A number, a module constant or a timeout-like name: what a measured time is held against.

    Two clock readings compared (``before <= first <= time.time()``) are an ordering, and allowed.
    """
    for n in ast.walk(node):
        if literal_seconds(n, constants) is not None:
            return True
        if isinstance(n, ast.Name | ast.Attribute) and LIMIT_NAME.search(
            n.attr if isinstance(n, ast.Attribute) else n.id
        ):
            return True
    return False


LIMIT_NAME = re.compile(r"timeout|deadline|limit|budget|seconds|interval", re.IGNORECASE)


def test_no_wall_clock_threshold():
    found = []
    for source in SOURCES:
        constants = module_constants(source.tree)
        for function in ast.walk(source.tree):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            timed = timed_names(function)
            for node in own_nodes(function):
                if isinstance(node, ast.Assert):
                    for compare in (n for n in ast.walk(node.test) if isinstance(n, ast.Compare)):
                        if all(isinstance(op, ast.Is | ast.IsNot) for op in compare.ops):
                            continue  # `measured is not None`: whether, not how long
                        sides = [compare.left, *compare.comparators]
                        clocked = [reads_clock(side, timed) for side in sides]
                        numbers = [literal_seconds(side, constants) for side in sides]
                        named = [duration_named(side) for side in sides]
                        ordering = all(isinstance(op, ast.Lt | ast.LtE | ast.Gt | ast.GtE) for op in compare.ops)
                        threshold = ordering and any(named) and any(n is not None and n != 0 for n in numbers)
                        limit = any(
                            limit_like(side, constants) for side, c in zip(sides, clocked, strict=True) if not c
                        )
                        if (any(clocked) and limit) or threshold:
                            found.append(f"{source.name}:{node.lineno}: asserts a duration: {ast.unparse(compare)}")
                elif isinstance(node, ast.Call) and called_name(node) in WAITS:
                    deadline = wait_deadline(node, constants)
                    if deadline is not None and deadline < MIN_DEADLINE:
                        found.append(
                            f"{source.name}:{node.lineno}: a {deadline:g} s deadline: {ast.unparse(node)[:90]}"
                        )
    assert not found, (
        "Wall-clock thresholds fail on a loaded machine for the wrong reason and promise nothing a user was "
        "promised. Assert what the time stood for: a count of calls, an ordering, a bound the code enforces "
        f"(inject its clock), or move the measurement to benchmarks/. Waits poll with a deadline of at least "
        f"{MIN_DEADLINE:g} s. See CONTRIBUTING.md, 'Writing tests'.\n" + "\n".join(found)
    )


def sleeps(statement: ast.stmt) -> bool:
    return (
        isinstance(statement, ast.Expr)
        and isinstance(statement.value, ast.Call)
        and dotted(statement.value.func) == "time.sleep"
    )


def asserts_absence(statement: ast.stmt) -> bool:
    """``assert not x``, ``assert a not in b``, ``assert n == 0``: that something did not happen."""
    if not isinstance(statement, ast.Assert):
        return False
    test = statement.test
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        return True
    if isinstance(test, ast.Compare):
        if any(isinstance(op, ast.NotIn) for op in test.ops):
            return True
        return isinstance(test.ops[0], ast.Eq) and literal_seconds(test.comparators[0]) == 0
    return False


def absence_after_sleep(function: ast.AST) -> list[int]:
    lines = []
    for node in ast.walk(function):
        for field in ("body", "orelse", "finalbody"):
            body = getattr(node, field, None)
            if isinstance(body, list):
                lines += [b.lineno for a, b in zip(body, body[1:], strict=False) if sleeps(a) and asserts_absence(b)]
    return lines


def test_no_absence_checked_after_a_fixed_sleep():
    found = [
        f"{source.name}:{line}: {function.name}"
        for source in SOURCES
        for function in collected_tests(source.tree)
        for line in absence_after_sleep(function)
    ]
    assert not found, (
        "These tests check that something did not happen right after a fixed sleep: if it is merely late, the test "
        "passes. Check the absence after a positive event that proves it would have arrived (a later marker whose "
        "line is written, a flush, a stopped producer). See CONTRIBUTING.md, 'Writing tests'.\n" + "\n".join(found)
    )


def test_the_checks_find_what_they_look_for():
    # Each rule, on a small sample that breaks it, so a broken scan cannot pass the suite silently.
    sample = ast.parse(
        textwrap.dedent(
            """
            import time, pytest

            def test_timed():
                started = time.monotonic()
                elapsed = time.monotonic() - started
                assert elapsed < 1.0
                wait_until(lambda: True, timeout=3)

            def test_vacuous(x):
                if x:
                    assert x
                return

            def test_late(port):
                time.sleep(2.5)
                assert not port_open(port)

            def test_fine():
                with open("f") as f:
                    for line in f:
                        assert line
            """
        )
    )
    functions = {f.name: f for f in collected_tests(sample)}
    timed = timed_names(functions["test_timed"])
    assert {"started", "elapsed"} <= timed
    waits = [n for n in ast.walk(functions["test_timed"]) if isinstance(n, ast.Call) and called_name(n) in WAITS]
    assert wait_deadline(waits[0]) == 3.0
    reached = {
        name: any(statement_checks(s, HELPERS) for s in unconditional_statements(f.body))
        for name, f in functions.items()
    }
    assert reached == {"test_timed": True, "test_vacuous": False, "test_late": True, "test_fine": True}
    assert absence_after_sleep(functions["test_late"]) and not absence_after_sleep(functions["test_timed"])
    assert any(isinstance(n, ast.Return) for n in own_nodes(functions["test_vacuous"]))
    assert "wait_until" in HELPERS  # it raises AssertionError when its deadline passes
