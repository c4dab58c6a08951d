import pytest


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
