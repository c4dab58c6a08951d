"""Which checks run: the built-ins that apply to this project plus custom ones."""

from __future__ import annotations

import dataclasses
import datetime
import sys
from collections.abc import Callable, Iterable
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from ..conf import ObserveConfig
from . import checks
from .library import HealthCheck

__all__ = ["BUILTINS", "Builtin", "CheckSpec", "Project", "build_specs", "find_celery_app"]


@dataclasses.dataclass(frozen=True)
class Project:
    """What the built-in checks are made for: the configuration, the ``DATABASES`` aliases, the ``CACHES``
    setting and the Celery app (None: no Celery)."""

    config: ObserveConfig
    databases: Iterable[str]
    caches: dict[str, Any]
    celery_app: Any


@dataclasses.dataclass(frozen=True)
class Builtin:
    """One built-in check: a row of :data:`BUILTINS`.

    Attributes:
        id: the check id (``database``; one per alias: ``database:replica``), a key of ``HEALTH_CHECK_OPTIONS``.
        check: its class in ``health/checks.py`` (exported by ``django_observe.health``).
        critical: a failure makes the service unready by default.
        component_type: ``componentType`` in health+json.
        make: the checks of this id for a project: ``(id, check)`` pairs, none where it does not apply.
        measurement: the measurement of its health+json key (``component:measurement``).
        opt_in: runs only when ``HEALTH_CHECK_OPTIONS`` enables it.
    """

    id: str
    check: type[HealthCheck]
    critical: bool
    component_type: str
    make: Callable[[Project], Iterable[tuple[str, HealthCheck]]]
    measurement: str = "responseTime"
    opt_in: bool = False


def _alias_id(kind: str, alias: str) -> str:
    return kind if alias == "default" else f"{kind}:{alias}"


def _databases(project: Project) -> Iterable[tuple[str, HealthCheck]]:
    return [(_alias_id("database", alias), checks.Database(alias=alias)) for alias in project.databases]


def _caches(project: Project) -> Iterable[tuple[str, HealthCheck]]:
    # A dummy cache stores nothing by design.
    return [
        (_alias_id("cache", alias), checks.Cache(alias=alias))
        for alias, options in project.caches.items()
        if not options.get("BACKEND", "").endswith("DummyCache")
    ]


def _redis(project: Project) -> Iterable[tuple[str, HealthCheck]]:
    urls = project.config.redis_urls
    return [("redis" if index == 1 else f"redis:{index}", checks.Redis(url=url)) for index, url in enumerate(urls, 1)]


def _celery(make: Callable[[Project], HealthCheck], check_id: str) -> Callable[[Project], list[tuple[str, Any]]]:
    return lambda project: [] if project.celery_app is None else [(check_id, make(project))]


def _migrations(project: Project) -> Iterable[tuple[str, HealthCheck]]:
    return [("migrations", checks.Migrations(alias="default"))] if "default" in project.databases else []


def _disk(project: Project) -> Iterable[tuple[str, HealthCheck]]:
    config = project.config
    return [("disk", checks.Disk(paths=config.health_disk_paths, warn_percent=config.health_disk_warn_percent))]


def _memory(project: Project) -> Iterable[tuple[str, HealthCheck]]:
    if not checks.memory_readable():
        return []
    return [("memory", checks.Memory(warn_percent=project.config.health_memory_warn_percent))]


# The built-in checks, one row each, in the order they run and are listed. Adding one: its class in
# checks.py, exported by health/__init__.py, a row here and a line in docs/health.md's table of checks
# (tests/unit/test_health_builtins.py fails until all four agree); HEALTH_CHECK_OPTIONS accepts its id.
BUILTINS: tuple[Builtin, ...] = (
    Builtin("database", checks.Database, True, "datastore", _databases),
    Builtin("cache", checks.Cache, True, "datastore", _caches),
    Builtin("redis", checks.Redis, True, "datastore", _redis),
    Builtin(
        "celery_broker",
        checks.CeleryBroker,
        True,
        "component",
        _celery(lambda p: checks.CeleryBroker(app=p.celery_app), "celery_broker"),
    ),
    Builtin(
        "celery",
        checks.CeleryWorkers,
        False,
        "component",
        _celery(lambda p: checks.CeleryWorkers(app=p.celery_app, min_workers=p.config.celery_min_workers), "celery"),
        measurement="connections",
    ),
    # Off unless enabled: it waits for every worker's inspect reply (up to a second, longer on brokers that
    # poll, such as the filesystem transport).
    Builtin(
        "celery_queues",
        checks.CeleryQueues,
        False,
        "component",
        _celery(lambda p: checks.CeleryQueues(app=p.celery_app), "celery_queues"),
        measurement="queues",
        opt_in=True,
    ),
    Builtin("migrations", checks.Migrations, True, "datastore", _migrations),
    Builtin("disk", checks.Disk, False, "system", _disk, measurement="utilization"),
    Builtin("memory", checks.Memory, False, "system", _memory, measurement="utilization"),
)

# Derived from the table.
BUILTIN_CRITICAL = {row.id: row.critical for row in BUILTINS}
COMPONENT_TYPES = {row.id: row.component_type for row in BUILTINS}
OPT_IN = frozenset(row.id for row in BUILTINS if row.opt_in)
MEASUREMENTS = {row.id: row.measurement for row in BUILTINS}


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
    project = Project(config, tuple(databases), dict(caches or {}), celery_app)
    built = [pair for row in BUILTINS for pair in row.make(project)]

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
