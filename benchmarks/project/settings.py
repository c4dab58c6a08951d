"""One settings module, six configurations (``BENCH_CONFIG``), identical views and base middleware.

1. ``bare``: Django alone.
2. ``floor``: one hand-written middleware doing only the essential work (``floor.py``).
3. ``observe``: django_observe with health, correlation, JSON logging and metrics; tracing off.
4. ``peers``: django-guid + django-structlog + django-prometheus, configured as their docs recommend.
5. ``observe_otel``: django_observe with tracing on (sampled, batch exporter to a local sink).
6. ``otel_raw``: OpenTelemetry's Django instrumentor + SDK with the same exporter.
7. ``observe_console``: ``observe`` plus the console recording (``django_observe.console``; benchmarks/console.py).
"""

import os

CONFIG = os.environ.get("BENCH_CONFIG", "bare")
CONFIGS = ("bare", "floor", "observe", "peers", "observe_otel", "otel_raw", "observe_console")
if CONFIG not in CONFIGS:
    raise ValueError(f"BENCH_CONFIG must be one of {CONFIGS}, got {CONFIG!r}")

SECRET_KEY = "benchmark-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "benchmarks.project.urls"
USE_TZ = True
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth"]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("BENCH_DB", "/tmp/bench.sqlite3"),
        "CONN_MAX_AGE": 60,  # persistent connections, as in production
    }
}
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

LOG_LEVEL = "INFO"
LOG_FORMAT = "json"
OTEL_ENABLED = CONFIG == "observe_otel"
DJANGO_OBSERVE = {"SERVICE_NAME": "bench"}

if CONFIG == "floor":
    MIDDLEWARE = ["benchmarks.project.floor.floor_middleware", *MIDDLEWARE]

elif CONFIG in ("observe", "observe_otel"):
    INSTALLED_APPS.append("django_observe")

elif CONFIG == "observe_console":
    INSTALLED_APPS += ["django_observe", "django_observe.console"]
    TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}]
    if os.environ.get("BENCH_DATABASE_URL"):  # the console's render benchmark on PostgreSQL
        from urllib.parse import urlsplit

        _url = urlsplit(os.environ["BENCH_DATABASE_URL"])
        DATABASES["default"] = {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": _url.path.lstrip("/"),
            "USER": _url.username or "",
            "HOST": _url.hostname or "",
            "PORT": str(_url.port or ""),
        }

elif CONFIG == "peers":
    import structlog

    INSTALLED_APPS += ["django_guid", "django_structlog", "django_prometheus"]
    MIDDLEWARE = [
        "django_guid.middleware.guid_middleware",
        "django_prometheus.middleware.PrometheusBeforeMiddleware",
        *MIDDLEWARE,
        "django_structlog.middlewares.RequestMiddleware",
        "django_prometheus.middleware.PrometheusAfterMiddleware",
    ]
    DJANGO_GUID = {"GUID_HEADER_NAME": "X-Correlation-ID", "INTEGRATIONS": []}
    LOGGING = {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"correlation_id": {"()": "django_guid.log_filters.CorrelationId"}},
        "formatters": {
            "json": {"()": structlog.stdlib.ProcessorFormatter, "processor": structlog.processors.JSONRenderer()},
        },
        "handlers": {
            "stdout": {"class": "logging.StreamHandler", "formatter": "json", "filters": ["correlation_id"]},
        },
        "root": {"handlers": ["stdout"], "level": "INFO"},
    }
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.filter_by_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.stdlib.add_logger_name,
            structlog.stdlib.add_log_level,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            structlog.processors.UnicodeDecoder(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )

elif CONFIG == "otel_raw":
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "bench"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    DjangoInstrumentor().instrument()

if os.environ.get("BENCH_PROJECT_LOGGING") and CONFIG in ("observe", "observe_otel"):
    # A project with its own LOGGING (django_observe's formatter on a handler with a filter, as Django's docs
    # write them): LOG_CONFIGURE="auto" keeps it, so the request line goes through logging's record and
    # handler chain.
    LOGGING = {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"require_debug_false": {"()": "django.utils.log.RequireDebugFalse"}},
        "formatters": {"json": {"()": "django_observe.logging.JSONFormatter"}},
        "handlers": {
            "stdout": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stdout",
                "formatter": "json",
                "filters": ["require_debug_false"],
            }
        },
        "root": {"handlers": ["stdout"], "level": "INFO"},
    }
