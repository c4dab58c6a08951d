"""The runtime, built in-process with different configurations: no subprocess, no private globals."""

import dataclasses
import logging
import types

import pytest
from django.test import Client, override_settings
from health_check import HealthCheck
from prometheus_client import CollectorRegistry

from django_observe import conf, runtime, wiring
from django_observe.middleware import ObserveMiddleware

DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}


@dataclasses.dataclass
class AlwaysUp(HealthCheck):
    def run(self):
        return None


def build(**options):
    config = conf.load_config(types.SimpleNamespace(DEBUG=False, DJANGO_OBSERVE=options), environ={})
    return wiring.build_runtime(
        config, role="command", databases=DATABASES, caches=CACHES, registry=CollectorRegistry()
    )


def test_two_runtimes_with_different_metrics_in_one_process():
    shop = build(METRICS_NAMESPACE="shop", METRICS_BUCKETS=[0.1, 1])
    other = build()  # its own registry: no clash with the first, nor with the installed runtime
    assert other.metrics.catalogue is not shop.metrics.catalogue
    try:
        bare = build(METRICS_ENABLED=False)
        shape = shop.metrics.catalogue.request_duration_shape
        assert shape.name == "shop_http_server_request_duration_seconds"
        assert shape.upper_bounds == (0.1, 1.0, float("inf"))
        assert bare.metrics is None
        shop.metrics.catalogue.request_duration.labels("GET", "x", "200").observe(0.5)
        value = shop.metrics.registry.get_sample_value(
            "shop_http_server_request_duration_seconds_bucket",
            {"method": "GET", "route": "x", "status_code": "200", "le": "1.0"},
        )
        assert value == 1.0
    finally:
        shop.metrics.close()
    # closed: the names are free again
    assert shop.metrics.registry.get_sample_value("shop_http_server_request_duration_seconds_count") is None


def test_health_runner_follows_the_configuration():
    first = build(METRICS_ENABLED=False, HEALTH_CHECKS=[{"path": f"{__name__}.AlwaysUp", "id": "up"}])
    second = build(METRICS_ENABLED=False, HEALTH_CHECK_OPTIONS={"disk": {"enabled": False}})
    assert "up" in first.health.specs and "up" not in second.health.specs
    assert "disk" in first.health.specs and "disk" not in second.health.specs


def test_span_factory_only_with_tracing_on():
    assert build(METRICS_ENABLED=False).tracing is None
    # A worker's main process builds no provider (children do, after the fork): nothing global is touched.
    config = conf.load_config(
        types.SimpleNamespace(
            DEBUG=False,
            OTEL_ENABLED=True,
            DJANGO_OBSERVE={"TRACING_EXCLUDED_URLS": ["^/skip"], "METRICS_ENABLED": False},
        ),
        environ={},
    )
    traced = wiring.build_runtime(
        config, role="worker", databases=DATABASES, caches=CACHES, registry=CollectorRegistry()
    )
    assert traced.tracing is not None and traced.tracing.provider is None
    skipped = types.SimpleNamespace(path="/skip/me", method="GET", META={}, scheme="http")
    assert traced.tracing.spans.start(skipped) is None


@pytest.mark.parametrize(
    ("options", "installs_handlers"),
    [({"LOG_CONFIGURE": "off"}, None), ({"LOG_CONFIGURE": "on"}, True), ({"LOG_CONFIGURE": "auto"}, True)],
)
def test_logging_setup_follows_log_configure(options, installs_handlers):
    rt = build(METRICS_ENABLED=False, **options)
    if installs_handlers is None:
        assert rt.logging_setup is None
    else:
        assert rt.logging_setup.installs_handlers is installs_handlers


def test_override_settings_rebuilds_the_runtime_and_restores_it():
    before = runtime.get_runtime()
    with override_settings(DJANGO_OBSERVE={"CORRELATION_HEADERS": ["X-Request-ID"], "METRICS_ENABLED": False}):
        inside = runtime.get_runtime()
        assert inside is not before and inside.metrics is None
        response = Client().get("/ping", HTTP_X_REQUEST_ID="abc-123")
        assert response["X-Request-ID"] == "abc-123"
    after = runtime.get_runtime()
    assert after is not inside and after.config.correlation_headers == before.config.correlation_headers
    assert after.metrics is not None


def test_log_level_setting_reaches_the_root_handler():
    with override_settings(LOG_LEVEL="ERROR"):
        assert runtime.get_config().log_level == "error"
        assert logging.getLogger().level == logging.ERROR
    assert logging.getLogger().level == logging.getLevelName(runtime.get_config().log_level.upper())


def test_middleware_takes_its_collaborators_from_the_current_runtime():
    with override_settings(DJANGO_OBSERVE={"METRICS_ENABLED": False, "LOG_REQUESTS": False}):
        middleware = ObserveMiddleware(lambda request: None)
        assert middleware.recorder is None and middleware.request_line is None
    middleware = ObserveMiddleware(lambda request: None)
    assert middleware.recorder is runtime.get_runtime().metrics.recorder


def test_an_invalid_rebuild_keeps_the_previous_runtime():
    before = runtime.get_runtime()
    with pytest.raises(conf.InvalidConfiguration, match="LOG_FORMAT"), override_settings(LOG_FORMAT="xml"):
        pass
    assert runtime.get_runtime().config == before.config


def test_logging_setup_leaves_the_call_site_to_other_handlers():
    import logging as stdlib_logging

    runtime.get_runtime().logging_setup()
    assert stdlib_logging._srcfile is not None  # other handlers still get %(lineno)d and %(funcName)s
    assert stdlib_logging.logThreads and stdlib_logging.logProcesses
    records = []

    class Keep(stdlib_logging.Handler):
        def emit(self, record):
            records.append(record)

    logger = stdlib_logging.getLogger("test_runtime.callsite")
    handler = Keep()
    logger.addHandler(handler)
    try:
        logger.warning("where am I")
    finally:
        logger.removeHandler(handler)
    assert records[0].funcName == "test_logging_setup_leaves_the_call_site_to_other_handlers"


def test_get_config_refuses_to_hand_out_the_defaults_of_an_invalid_configuration():
    from django.core.exceptions import ImproperlyConfigured

    from django_observe.correlation import CorrelationPolicy

    config = conf.load_config(types.SimpleNamespace(DEBUG=False), environ={})
    error = conf.ConfigError("LOG_FORMAT", 'LOG_FORMAT must be "json" or "text", got "xml"')
    previous = runtime.install(
        runtime.Runtime(config=config, role="command", correlation=CorrelationPolicy(), errors=(error,))
    )
    try:
        with pytest.raises(ImproperlyConfigured, match='LOG_FORMAT must be "json" or "text"'):
            runtime.get_config()
    finally:
        runtime.install(previous)


def _members(protocol: type) -> set[str]:
    return {name for name in vars(protocol) if not name.startswith("_")}


def test_every_part_of_a_built_runtime_has_what_its_protocol_names():
    """runtime.py types each field with a protocol of its own (it imports nothing of the package); the parts
    the wiring builds have every member (mypy checks the signatures, this the objects)."""
    config = conf.load_config(
        types.SimpleNamespace(
            DEBUG=False,
            OTEL_ENABLED=True,
            DJANGO_OBSERVE={"TRACING_SQL_COMMENTER": True, "CORRELATION_PROPAGATE": True, "DB_QUERY_STATS": True},
        ),
        environ={},
    )
    built = wiring.build_runtime(
        config, role="worker", databases=DATABASES, caches=CACHES, registry=CollectorRegistry()
    )
    try:
        protocols = {
            "config": runtime.Config,
            "correlation": runtime.Correlation,
            "identity": runtime.Identity,
            "health": runtime.Health,
            "metrics": runtime.Metrics,
            "tracing": runtime.Tracing,
            "queries": runtime.QueryCounting,
            "sql_comments": runtime.SqlCommenter,
            "outbound": runtime.Outbound,
            "llm_errors": runtime.WithheldErrors,
        }
        parts = {
            **{field: getattr(built, field) for field in protocols},
            "recorder": built.metrics.recorder,
            "spans": built.tracing.spans,
            "error": conf.ConfigError("X", "bad"),
        }
        protocols.update(recorder=runtime.RequestRecorder, spans=runtime.ServerSpans, error=runtime.ConfigProblem)
        for field, protocol in protocols.items():
            part = parts[field]
            assert part is not None, field
            missing = {name for name in _members(protocol) if not hasattr(part, name)}
            assert not missing, (field, missing)
        from django_observe.console.recorder import ConsoleRecorder

        assert {name for name in _members(runtime.Console) if not hasattr(ConsoleRecorder, name)} == set()
    finally:
        built.metrics.close()
