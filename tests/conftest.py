import pytest


@pytest.fixture(autouse=True)
def _fresh_health_cache():
    """Each test sees fresh health results (the runner's TTL cache is per process)."""
    from django_observe.health import state

    runner = state._runner
    if runner is not None:
        runner._cache.clear()
    yield
