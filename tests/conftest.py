import pytest


@pytest.fixture(autouse=True)
def _fresh_health_cache():
    """Each test sees fresh health results (the runner's TTL cache is per process)."""
    from django_observe.health import state

    runner = state._runner
    if runner is not None:
        runner._cache.clear()
    yield


@pytest.fixture
def observe(settings):
    """Reconfigure django_observe in-process: ``observe(HEALTH_DETAILS="never", ...)``.

    Builds the config exactly as the app does (load_config from settings, no environment)
    and rebuilds the health runner; restores the original afterwards.
    """
    from django_observe import apps, conf
    from django_observe.health import state

    original_config, original_runner = conf.get_config(), state._runner
    base = dict(getattr(settings, "DJANGO_OBSERVE", {}))

    def apply(**options):
        settings.DJANGO_OBSERVE = {**base, **options}
        config = conf.load_config(settings, environ={})
        conf.set_config(config)
        apps.configure_health()
        return config

    yield apply
    conf.set_config(original_config)
    state._runner = original_runner
