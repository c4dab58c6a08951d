"""With ``CI=true``, a run in which a test skipped fails, unless that skip is in ``tests/allowed_skips.txt``.

Loaded by tests/conftest.py (and with ``-p tests.ci_skips`` by tests/unit/test_suite_honesty.py). Locally nothing
changes: skips are listed by ``-ra`` as usual. In CI (``.ci/run``, ``.ci/matrix``) every skip, xfail and
module-level skip is collected, and at the end of the session any that the allowlist does not name turns the
exit status into 1 (tests failed) and is printed with how to fix it.

The allowlist (one committed file, ``OBSERVE_ALLOWED_SKIPS`` overrides its path for this plugin's own tests):
one entry a line, ``<test id or prefix>  # <why CI may skip it>``; a prefix covers the tests below it
(``tests/x.py`` covers the file, ``tests/x.py::test_y`` its parameters). An entry without a reason is refused.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# No pytest import at module level: .ci/matrix reads the allowlist with the system Python.

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
DEFAULT_ALLOWLIST = Path(__file__).resolve().parent / "allowed_skips.txt"

HOW_TO_FIX = """\
CI=true: {count} test(s) skipped that tests/allowed_skips.txt does not allow. A skip in CI means a claim went
untested. Fix it, in this order of preference:
  1. make what the test needs available in CI (.ci/run installs system packages; pyproject's `test` extra
     holds the Python ones);
  2. if it is truly optional, ask for it with tests/support.py's require_* helpers (require_service,
     require_binary, require_module, require_ipv6, require_root, require_fork): they skip locally and fail
     in CI, naming what is missing;
  3. only if CI cannot provide it, add a line `<test id>  # <why CI may skip it>` to tests/allowed_skips.txt."""


@dataclass(frozen=True)
class Entry:
    prefix: str
    reason: str

    def covers(self, nodeid: str) -> bool:
        if nodeid == self.prefix:
            return True
        return nodeid.startswith(self.prefix) and nodeid[len(self.prefix)] in ":[/"


def allowlist_path() -> Path:
    return Path(os.environ.get("OBSERVE_ALLOWED_SKIPS") or DEFAULT_ALLOWLIST)


class AllowlistError(ValueError):
    """A line of the allowlist without a test id or a reason."""


def read_allowlist(path: Path) -> list[Entry]:
    """The entries of the allowlist; raises ``AllowlistError`` for a line without a reason."""
    entries = []
    if not path.exists():
        return entries
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        prefix, _, reason = line.partition("#")
        if not prefix.strip() or not reason.strip():
            raise AllowlistError(
                f"{path}:{number}: an allowed skip needs a test id and a reason: `<test id>  # <why>`, got {raw!r}"
            )
        entries.append(Entry(prefix.strip(), reason.strip()))
    return entries


def skip_reason(report) -> str:
    if getattr(report, "wasxfail", None) is not None:
        return f"xfail: {report.wasxfail}"
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


class SkipGuard:
    def __init__(self) -> None:
        self.skipped: dict[str, str] = {}
        self.unlisted: dict[str, str] = {}

    def pytest_runtest_logreport(self, report) -> None:
        if report.skipped:
            self.skipped.setdefault(report.nodeid, skip_reason(report))

    def pytest_collectreport(self, report) -> None:
        if report.skipped:  # a module-level skip: every test in the file
            self.skipped.setdefault(report.nodeid, skip_reason(report))

    def pytest_sessionfinish(self, session, exitstatus) -> None:
        import pytest

        if not IN_CI or not self.skipped:
            return
        try:
            entries = read_allowlist(allowlist_path())
        except AllowlistError as exc:
            raise pytest.UsageError(str(exc)) from None
        self.unlisted = {
            nodeid: reason
            for nodeid, reason in self.skipped.items()
            if not any(entry.covers(nodeid) for entry in entries)
        }
        if self.unlisted and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not self.unlisted:
            return
        terminalreporter.section("skips CI does not allow", red=True)
        terminalreporter.line(HOW_TO_FIX.format(count=len(self.unlisted)), red=True)
        for nodeid, reason in sorted(self.unlisted.items()):
            terminalreporter.line(f"UNALLOWED SKIP {nodeid} - {reason}", red=True)


def pytest_configure(config) -> None:
    if not config.pluginmanager.has_plugin("observe-ci-skips"):
        config.pluginmanager.register(SkipGuard(), "observe-ci-skips")
