"""Which checks run: the built-ins that apply to this project plus custom ones."""

from __future__ import annotations

import dataclasses
import datetime
import sys
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string
from health_check import HealthCheck

from ..conf import ObserveConfig
from . import checks

__all__ = ["CheckSpec", "build_specs", "find_celery_app"]

# Built-in check ids and whether a failure makes the service unready by default.
BUILTIN_CRITICAL = {
    "database": True,
    "cache": True,
    "redis": True,
    "celery_broker": True,
    "celery": False,
    "celery_queues": False,
    "migrations": True,
    "disk": False,
    "memory": False,
}

COMPONENT_TYPES = {
    "database": "datastore",
    "cache": "datastore",
    "redis": "datastore",
    "celery_broker": "component",
    "celery": "component",
    "celery_queues": "component",
    "migrations": "datastore",
    "disk": "system",
    "memory": "system",
}

# Built-in checks that run only when HEALTH_CHECK_OPTIONS enables them: the queue check waits for every
# worker's inspect reply (up to a second, longer on brokers that poll, such as the filesystem transport).
OPT_IN = frozenset({"celery_queues"})
MEASUREMENTS = {"disk": "utilization", "memory": "utilization", "celery": "connections", "celery_queues": "queues"}


@dataclasses.dataclass(frozen=True)
class CheckSpec:
    """One check as the endpoints run it.

    Attributes:
        id: stable identifier (``database``, ``database:replica``, ``redis``...), used in
            URLs, JSON keys and metric labels.
        check: the django-health-check ``HealthCheck`` instance.
        critical: a failure makes /readyz and /health answer 503; otherwise the service is degraded.
        timeout: seconds before the check counts as failed.
    """

    id: str
    check: HealthCheck
    critical: bool
    timeout: float

    @property
    def component(self) -> str:
        return self.id.split(":", 1)[0]

    @property
    def component_id(self) -> str:
        head, _, tail = self.id.partition(":")
        return tail or getattr(self.check, "alias", head)

    @property
    def component_type(self) -> str:
        return COMPONENT_TYPES.get(self.component, "component")

    @property
    def measurement(self) -> str:
        return MEASUREMENTS.get(self.component, "responseTime")


def _alias_id(kind: str, alias: str) -> str:
    return kind if alias == "default" else f"{kind}:{alias}"


def find_celery_app(config: ObserveConfig) -> Any:
    """The Celery app to check: ``CELERY_APP``, else the app the project created, else None."""
    if config.celery_app:
        try:
            return import_string(config.celery_app.replace(":", "."))
        except ImportError as exc:
            raise ImproperlyConfigured(
                f'DJANGO_OBSERVE["CELERY_APP"] must be the dotted path of a Celery app, '
                f"got {config.celery_app!r} ({exc})"
            ) from exc
    state = sys.modules.get("celery._state")
    if state is None or state.default_app is None:
        return None
    app = state.get_current_app()
    return None if app.main == "default" else app


def _custom_spec(entry: Any, config: ObserveConfig, taken: set[str]) -> CheckSpec:
    if isinstance(entry, str):
        entry = {"path": entry}
    path = entry["path"]
    where = f'DJANGO_OBSERVE["HEALTH_CHECKS"] entry {path!r}'
    try:
        cls = import_string(path)
    except ImportError as exc:
        raise ImproperlyConfigured(f"{where} cannot be imported: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, HealthCheck)):
        raise ImproperlyConfigured(f"{where} must be a subclass of health_check.HealthCheck")
    timeout = float(entry.get("timeout", config.health_timeout))
    options = dict(entry.get("options") or {})
    if "timeout" in {f.name for f in dataclasses.fields(cls)} and "timeout" not in options:
        options["timeout"] = datetime.timedelta(seconds=timeout)
    try:
        check = cls(**options)
    except TypeError as exc:
        raise ImproperlyConfigured(f"{where} rejected its options: {exc}") from exc
    check_id = entry.get("id") or _snake(cls.__name__)
    if check_id in taken:
        raise ImproperlyConfigured(f'{where} uses the id {check_id!r}, which is taken; give it an "id"')
    return CheckSpec(check_id, check, bool(entry.get("critical", True)), timeout)


def _snake(name: str) -> str:
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i and not name[i - 1].isupper():
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


def build_specs(
    config: ObserveConfig,
    *,
    databases: Any = ("default",),
    caches: Any = None,
    celery_app: Any = None,
) -> list[CheckSpec]:
    """The checks for this project, in a stable order.

    Args:
        config: the loaded configuration.
        databases: the database aliases (the keys of ``DATABASES``).
        caches: the ``CACHES`` setting (alias -> options).
        celery_app: the Celery app to check (see :func:`find_celery_app`); None skips Celery.

    Raises:
        ImproperlyConfigured: a custom check cannot be imported or built, or an option is invalid.
    """
    default_timeout = config.health_timeout
    overrides = config.health_check_options
    built: list[tuple[str, HealthCheck]] = []
    for alias in databases:
        built.append((_alias_id("database", alias), checks.Database(alias=alias)))
    for alias, cache_conf in (caches or {}).items():
        if cache_conf.get("BACKEND", "").endswith("DummyCache"):
            continue  # a dummy cache stores nothing by design
        built.append((_alias_id("cache", alias), checks.Cache(alias=alias)))
    for index, url in enumerate(config.redis_urls, start=1):
        built.append(("redis" if index == 1 else f"redis:{index}", checks.Redis(url=url)))
    if celery_app is not None:
        built.append(("celery_broker", checks.CeleryBroker(app=celery_app)))
        built.append(("celery", checks.CeleryWorkers(app=celery_app, min_workers=config.celery_min_workers)))
        built.append(("celery_queues", checks.CeleryQueues(app=celery_app)))
    if "default" in databases:
        built.append(("migrations", checks.Migrations(alias="default")))
    built.append(("disk", checks.Disk(paths=config.health_disk_paths, warn_percent=config.health_disk_warn_percent)))
    if checks.memory_percent() is not None:
        built.append(("memory", checks.Memory(warn_percent=config.health_memory_warn_percent)))

    specs: list[CheckSpec] = []
    known_ids = {check_id for check_id, _ in built}
    for key in overrides:
        if key not in known_ids and key.split(":")[0] not in BUILTIN_CRITICAL:
            raise ImproperlyConfigured(
                f'DJANGO_OBSERVE["HEALTH_CHECK_OPTIONS"] has unknown check id {key!r}; '
                f"known ids: {', '.join(sorted(known_ids))}"
            )
    for check_id, check in built:
        opts = overrides.get(check_id, overrides.get(check_id.split(":")[0], {}))
        if not isinstance(opts, dict) or set(opts) - {"critical", "timeout", "enabled"}:
            raise ImproperlyConfigured(
                f'DJANGO_OBSERVE["HEALTH_CHECK_OPTIONS"][{check_id!r}] must be a dict with the keys '
                f'"critical", "timeout", "enabled", got {opts!r}'
            )
        if not opts.get("enabled", check_id not in OPT_IN):
            continue
        timeout = float(opts.get("timeout", default_timeout))
        if timeout <= 0:
            raise ImproperlyConfigured(
                f'DJANGO_OBSERVE["HEALTH_CHECK_OPTIONS"][{check_id!r}]["timeout"] must be a positive number'
            )
        check.timeout = datetime.timedelta(seconds=timeout)
        critical = bool(opts.get("critical", BUILTIN_CRITICAL[check_id.split(":")[0]]))
        specs.append(CheckSpec(check_id, check, critical, timeout))

    taken = {spec.id for spec in specs}
    for entry in config.health_checks:
        spec = _custom_spec(entry, config, taken)
        taken.add(spec.id)
        specs.append(spec)
    return specs
