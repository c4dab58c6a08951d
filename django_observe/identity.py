"""Who is speaking: the service identity every signal carries (logs, traces, metrics, health bodies).

Resolved once, when the configuration is loaded (``conf.load_config``); first match wins:

============================== ==========================================================================
``service.name``               ``OTEL_SERVICE_NAME``; ``SERVICE_NAME``; ``service.name`` in
                               ``OTEL_RESOURCE_ATTRIBUTES``; the settings package
                               (``DJANGO_SETTINGS_MODULE="acme.settings"`` -> ``acme``); ``"django"``
``service.version``            ``SERVICE_VERSION``; ``service.version`` in ``OTEL_RESOURCE_ATTRIBUTES``;
                               the version of the installed distribution of the settings package;
                               ``"unknown"``
``deployment.environment.name`` ``SERVICE_ENVIRONMENT``; ``deployment.environment.name`` (or the older
                               ``deployment.environment``) in ``OTEL_RESOURCE_ATTRIBUTES``;
                               ``"production"``
``service.instance.id``        per process: a random UUID made when the process first asks for it, and
                               again after a fork (so each gunicorn worker and Celery child has its own)
============================== ==========================================================================

Each of ``OTEL_SERVICE_NAME``, ``SERVICE_*`` is read as every option is: environment variable first, then
``DJANGO_OBSERVE``. This module is pure (no Django, nothing of django_observe), so every layer may use it.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import uuid
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote

__all__ = [
    "DEFAULT_ENVIRONMENT",
    "DEFAULT_NAME",
    "DEFAULT_VERSION",
    "Resolved",
    "ServiceIdentity",
    "distribution_version",
    "instance_id",
    "parse_resource_attributes",
    "resolve",
    "settings_package",
]

DEFAULT_NAME = "django"
DEFAULT_VERSION = "unknown"
DEFAULT_ENVIRONMENT = "production"

# W3C Baggage octets allowed unencoded in a value (the OTel spec points OTEL_RESOURCE_ATTRIBUTES at it).
_KEY_RE = re.compile(r"[A-Za-z0-9!#$%&'*+\-.^_`|~]+")


def parse_resource_attributes(text: str) -> dict[str, str]:
    """``OTEL_RESOURCE_ATTRIBUTES``: ``key1=value1,key2=value2``, values percent-decoded, spaces trimmed.

    An empty text gives ``{}``; an empty entry (``a=1,,b=2``) is skipped; a later key wins.

    Raises:
        ValueError: an entry without ``=``, an empty or invalid key, or a bad percent escape.
    """
    found: dict[str, str] = {}
    for entry in text.split(","):
        entry = entry.strip()
        if not entry:
            continue
        key, sep, value = entry.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise ValueError(f"must be key=value pairs separated by commas; {entry!r} has no key=value")
        if not _KEY_RE.fullmatch(key):
            raise ValueError(f"has an invalid key {key!r} (letters, digits and !#$%&'*+-.^_`|~ only)")
        if re.search(r"%(?![0-9A-Fa-f]{2})", value):
            raise ValueError(f"has a bad percent escape in the value of {key!r}")
        found[key] = unquote(value, errors="strict")
    return found


def settings_package(settings_module: str | None) -> str | None:
    """The top-level package of the settings module: ``acme.settings.prod`` -> ``acme``."""
    if not settings_module:
        return None
    package = settings_module.strip().split(".")[0]
    return package or None


@functools.lru_cache(maxsize=32)
def distribution_version(package: str) -> str | None:
    """The version of the installed distribution that provides the import package ``package``, if any."""
    from importlib import metadata

    try:
        names = metadata.packages_distributions().get(package) or ()
    except Exception:  # a broken dist-info never stops the start-up
        return None
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


_instance: tuple[int, str] | None = None


def instance_id() -> str:
    """This process's ``service.instance.id``: a UUID, new in each process (a fork gets its own)."""
    global _instance
    pid = os.getpid()
    if _instance is None or _instance[0] != pid:
        _instance = (pid, str(uuid.uuid4()))
    return _instance[1]


@dataclasses.dataclass(frozen=True)
class Resolved:
    """One resolved identity value and where it came from (shown by ``manage.py observe_config``)."""

    value: str
    source: str


def resolve(
    *,
    otel_service_name: Resolved | None,
    service_name: Resolved | None,
    service_version: Resolved | None,
    service_environment: Resolved | None,
    resource_attributes: Mapping[str, str],
    resource_source: str = "OTEL_RESOURCE_ATTRIBUTES",
    settings_module: str | None,
    version_of: Callable[[str], str | None] = distribution_version,
) -> dict[str, Resolved]:
    """Name, version and environment by the precedence in the module docstring.

    Args:
        otel_service_name, service_name, service_version, service_environment: the value set explicitly
            (with its source), or None when the option is not set.
        resource_attributes: the parsed ``OTEL_RESOURCE_ATTRIBUTES``; resource_source: where that came from.
        settings_module: ``DJANGO_SETTINGS_MODULE``.
        version_of: finds the installed version of an import package (tests pass a fake).

    Returns:
        ``{"name": ..., "version": ..., "environment": ...}``.
    """

    def from_resource(*keys: str) -> Resolved | None:
        for key in keys:
            if resource_attributes.get(key):
                return Resolved(resource_attributes[key], f"{resource_source} ({key})")
        return None

    package = settings_package(settings_module)
    name = otel_service_name or service_name or from_resource("service.name")
    if name is None:
        name = (
            Resolved(package, f"default: settings package of {settings_module}")
            if package
            else Resolved(DEFAULT_NAME, "default")
        )
    version = service_version or from_resource("service.version")
    if version is None:
        installed = version_of(package) if package else None
        version = (
            Resolved(installed, f"default: installed distribution of {package}")
            if installed
            else Resolved(DEFAULT_VERSION, "default")
        )
    environment = (
        service_environment
        or from_resource("deployment.environment.name", "deployment.environment")
        or Resolved(DEFAULT_ENVIRONMENT, "default")
    )
    return {"name": name, "version": version, "environment": environment}


# Keys of OTEL_RESOURCE_ATTRIBUTES the identity owns: the resolved values replace them.
_OWNED_KEYS = frozenset(
    {"service.name", "service.version", "deployment.environment", "deployment.environment.name", "service.instance.id"}
)


@dataclasses.dataclass(frozen=True)
class ServiceIdentity:
    """The identity of this service, the same for every signal.

    Attributes:
        name, version, environment: ``service.name``, ``service.version``, ``deployment.environment.name``.
        extra: the other ``OTEL_RESOURCE_ATTRIBUTES`` (``team=payments``), passed on to OTLP resources.
    """

    name: str = DEFAULT_NAME
    version: str = DEFAULT_VERSION
    environment: str = DEFAULT_ENVIRONMENT
    extra: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_config(cls, config: Any) -> ServiceIdentity:
        """The identity of a loaded ``ObserveConfig`` (whose SERVICE_* values are already resolved)."""
        return cls(
            name=config.service_name,
            version=config.service_version,
            environment=config.service_environment,
            extra=dict(config.otel_resource_attributes),
        )

    @property
    def instance_id(self) -> str:
        return instance_id()

    def resource_attributes(self, *, instance: str | None = None) -> dict[str, str]:
        """The OTLP resource: the extra attributes, then the identity (which wins), then the instance.

        Args:
            instance: the ``service.instance.id``; default: this process's.
        """
        attributes = {k: v for k, v in self.extra.items() if k not in _OWNED_KEYS}
        attributes.update(
            {
                "service.name": self.name,
                "service.version": self.version,
                "deployment.environment.name": self.environment,
                "service.instance.id": instance or instance_id(),
            }
        )
        return attributes

    def as_log_service(self) -> dict[str, str]:
        """``{"name", "environment", "version"}``, as the log flavours take it."""
        return {"name": self.name, "environment": self.environment, "version": self.version}
