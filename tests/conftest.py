import pytest

from tests import ci_skips


def pytest_configure(config):
    # With CI=true, a skip not listed in tests/allowed_skips.txt fails the run (tests/ci_skips.py).
    ci_skips.pytest_configure(config)


@pytest.fixture(autouse=True)
def _environment_restored():
    """Each test leaves the process environment as it found it: building a runtime sets variables such as
    PROMETHEUS_MULTIPROC_DIR, which the servers later tests start would otherwise inherit."""
    import os

    saved = dict(os.environ)
    yield
    if os.environ != saved:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(autouse=True)
def _fresh_health_cache():
    """Each test sees fresh health results (the runner's TTL cache is per process)."""
    from django_observe.runtime import current

    runtime = current()
    if runtime is not None and runtime.health is not None:
        runtime.health.clear_cache()
    yield


@pytest.fixture
def observe(settings):
    """Reconfigure django_observe in-process: ``observe(HEALTH_DETAILS="never", ...)``.

    Rebuilds the runtime exactly as the app does (from settings, no environment); pytest-django's
    ``settings`` fixture restores the settings afterwards, and ``setting_changed`` rebuilds the original.
    """
    from django_observe import wiring

    base = dict(getattr(settings, "DJANGO_OBSERVE", {}))

    def apply(**options):
        settings.DJANGO_OBSERVE = {**base, **options}
        return wiring.rebuild(environ={}).config

    yield apply
