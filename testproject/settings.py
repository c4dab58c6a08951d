"""Settings of the test project: a customer's project using django_observe.

Embedded defaults need no server: SQLite, local-memory cache and a filesystem
Celery broker under ./var. Real services come from the environment:

- ``DATABASE_URL``: ``postgres://user:password@host:port/name``
- ``DATABASE_POOL``: maximum size of Django's psycopg 3 connection pool per process (PostgreSQL; unset: no pool)
- ``REDIS_URL``: Redis cache, Redis health check and (unless ``CELERY_BROKER_URL``) the Celery broker
- ``CELERY_BROKER_URL``: any Celery broker (``amqp://guest:guest@127.0.0.1:5672//``)
- ``DJANGO_PROMETHEUS=1``: django-prometheus installed as its docs say (app, middleware, database engine,
  local-memory cache backend, model mixin on ``Message``, migration gauges), its metrics on our port
- ``TESTPROJECT_RQ_URL``: ``django_rq`` in ``INSTALLED_APPS``, its queues ``default`` and ``reports`` on that Redis
- ``TESTPROJECT_CHANNELS=1``: ``daphne`` in ``INSTALLED_APPS`` (WebSocket consumers, ``testproject.asgi_channels``)
- ``OPENAI_BASE_URL``: an OpenAI-compatible endpoint on loopback; ``POST /api/chat`` then answers with the openai SDK
"""

import importlib.util
import os
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("TESTPROJECT_VAR_DIR", BASE_DIR / "var"))

SECRET_KEY = os.environ.get("SECRET_KEY", "testproject-insecure-key-for-development-only")
DEBUG = os.environ.get("DEBUG", "0").lower() in {"1", "true", "yes", "on"}
ALLOWED_HOSTS = os.environ.get("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver").split(",")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_observe",
    "testproject.demo",
]

# django_observe inserts its own middleware first; nothing to add here.
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
# A project with Django REST framework lists it here, as DRF's installation asks (its authentication and
# permissions are then timed in authorization_duration_seconds).
if importlib.util.find_spec("rest_framework") is not None:
    INSTALLED_APPS.append("rest_framework")

# Django's tasks framework with the database backend (run tasks with `manage.py db_worker`).
if os.environ.get("TESTPROJECT_DJANGO_TASKS") == "1":
    import django

    if django.VERSION < (6, 0):
        INSTALLED_APPS.append("django_tasks")  # the backport of django.tasks
    INSTALLED_APPS.append("django_tasks_db")
    TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default", "reports"]}}

# RQ with django-rq: jobs in testproject.demo.jobs, run by `manage.py rqworker default reports`.
if os.environ.get("TESTPROJECT_RQ_URL"):
    INSTALLED_APPS.append("django_rq")
    RQ_QUEUES = {name: {"URL": os.environ["TESTPROJECT_RQ_URL"]} for name in ("default", "reports")}

# Django Channels (WebSocket consumers in testproject.demo.consumers, served by testproject.asgi_channels),
# installed as its guide says: "daphne" first in INSTALLED_APPS, "channels" not listed.
if os.environ.get("TESTPROJECT_CHANNELS") == "1":
    INSTALLED_APPS.insert(0, "daphne")
# The built-in console at /observe/ (docs/console.md): TESTPROJECT_CONSOLE=1 (rundemo sets it, and the demo itself
# has it so that its migrate creates the console's tables); its tables on another database alias with
# CONSOLE_DATABASE_URL (a PostgreSQL URL, the alias "console").
if os.environ.get("TESTPROJECT_CONSOLE") == "1" or sys.argv[1:2] == ["rundemo"]:
    INSTALLED_APPS.insert(INSTALLED_APPS.index("django_observe") + 1, "django_observe.console")
LOGIN_URL = "/admin/login/"

if os.environ.get("TESTPROJECT_LOGIN_REQUIRED"):
    MIDDLEWARE.append("django.contrib.auth.middleware.LoginRequiredMiddleware")

ROOT_URLCONF = "testproject.urls"
WSGI_APPLICATION = "testproject.wsgi.application"
ASGI_APPLICATION = "testproject.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django_observe.context_processors.correlation",  # {{ correlation_id }} (404.html)
            ]
        },
    }
]


def database_from_url(url: str) -> dict:
    parts = urlsplit(url)
    if parts.scheme not in {"postgres", "postgresql"}:
        raise ValueError(f"DATABASE_URL must be postgres://..., got scheme {parts.scheme!r}")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parts.path.lstrip("/")) or "postgres",
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        "OPTIONS": {"connect_timeout": 2},
        "TEST": {"NAME": os.environ.get("DATABASE_TEST_NAME")} if os.environ.get("DATABASE_TEST_NAME") else {},
    }


if os.environ.get("DATABASE_URL"):
    DATABASES = {"default": database_from_url(os.environ["DATABASE_URL"])}
    if os.environ.get("DATABASE_POOL"):
        DATABASES["default"]["OPTIONS"]["pool"] = {
            "min_size": 1,
            "max_size": int(os.environ["DATABASE_POOL"]),
            "timeout": 5,
        }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("SQLITE_PATH", str(BASE_DIR / "db.sqlite3")),
        }
    }

if os.environ.get("CONSOLE_DATABASE_URL"):
    DATABASES["console"] = database_from_url(os.environ["CONSOLE_DATABASE_URL"])
    DATABASE_ROUTERS = ["django_observe.console.routers.ConsoleRouter"]

REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

DJANGO_PROMETHEUS = os.environ.get("DJANGO_PROMETHEUS", "0") == "1"
if DJANGO_PROMETHEUS:
    # After django_observe, which sets multiprocess mode up before django_prometheus creates its metrics.
    INSTALLED_APPS.insert(INSTALLED_APPS.index("django_observe") + 1, "django_prometheus")
    MIDDLEWARE = [
        "django_prometheus.middleware.PrometheusBeforeMiddleware",
        *MIDDLEWARE,
        "django_prometheus.middleware.PrometheusAfterMiddleware",
    ]
    for _database in DATABASES.values():
        _database["ENGINE"] = _database["ENGINE"].replace("django.db.backends.", "django_prometheus.db.backends.")
    if not REDIS_URL:  # its Redis backend needs django-redis
        CACHES["default"]["BACKEND"] = "django_prometheus.cache.backends.locmem.LocMemCache"
    PROMETHEUS_EXPORT_MIGRATIONS = True

# Celery: a filesystem broker under ./var unless a real one is configured.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or REDIS_URL or "filesystem://"
if CELERY_BROKER_URL == "filesystem://":
    _broker_dir = VAR_DIR / "broker"
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "store_processed": False,
        "control_folder": str(_broker_dir / "control"),
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_connect_timeout": 2, "socket_timeout": 5}
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND") or None
CELERY_TASK_ALWAYS_EAGER = os.environ.get("CELERY_TASK_ALWAYS_EAGER", "0") == "1"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
if os.environ.get("TESTPROJECT_BEAT_EVERY"):  # a beat schedule entry every N seconds (beat tests)
    CELERY_BEAT_SCHEDULE = {
        "add-every-n": {
            "task": "testproject.demo.tasks.add",
            "schedule": float(os.environ["TESTPROJECT_BEAT_EVERY"]),
            "args": (1, 2),
        }
    }

AUTH_PASSWORD_VALIDATORS = []
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The three top-level settings customers type; environment variables of the same name win.
LOG_LEVEL = "INFO"
LOG_FORMAT = "text" if DEBUG else "json"
OTEL_ENABLED = False

DJANGO_OBSERVE = {
    "SERVICE_NAME": "testproject",
    "SERVICE_VERSION": "1.0.0",
    "CELERY_APP": "testproject.celery:app",
    "CONSOLE_DATABASE": "console" if os.environ.get("CONSOLE_DATABASE_URL") else "default",
    # `manage.py observe_rules` turns these into burn-rate alerts (docs/slos.md).
    "SLOS": [
        {"name": "api-availability", "kind": "availability", "objective": 99.9, "routes": "api/.*", "window": "30d"},
        {"name": "api-latency", "kind": "latency", "objective": 99, "threshold_ms": 250, "routes": "api/.*"},
    ],
}
