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
import inspect
import os
import re
import sys
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
    """The version of the installed distribution that provides the import package ``package``, if any.

    The answer of ``importlib.metadata.packages_distributions()`` (a distribution's ``top_level.txt``, else
    the top-level names of the files in its ``RECORD``) for this one name, read from the ``*.dist-info`` and
    ``*.egg-info`` directories of ``sys.path`` in order: that function parses every file list of every
    installed distribution (half a second and 6 MB with a few hundred installed) and ``importlib.metadata``
    itself costs 1.5 MB; this reads each list as text and parses only those that mention ``package``.
    """
    for entry in sys.path:
        try:
            names = sorted(os.listdir(entry or "."))
        except OSError:  # a zip file or a missing directory: no distribution of an import package here
            continue
        for name in names:
            if name.endswith((".dist-info", ".egg-info")):
                folder = os.path.join(entry or ".", name)
                try:
                    if os.path.isdir(folder) and _provides(folder, package):
                        version = _version(folder)
                        if version:
                            return version
                except (OSError, UnicodeDecodeError):  # a broken dist-info never stops the start-up
                    continue
    return None


def _read(folder: str, name: str) -> str | None:
    try:
        with open(os.path.join(folder, name), encoding="utf-8") as fh:
            return fh.read()
    except FileNotFoundError:
        return None


def _provides(folder: str, package: str) -> bool:
    declared = (_read(folder, "top_level.txt") or "").split()
    if declared:
        return package in declared
    needle = package.encode()
    for name in ("RECORD", "installed-files.txt", "SOURCES.txt"):
        try:
            fh = open(os.path.join(folder, name), "rb")  # noqa: SIM115 (closed below)
        except FileNotFoundError:
            continue
        # Searched in chunks, then parsed line by line only when the name occurs: a RECORD can be megabytes
        # (mkdocs-material's is 1.6 MB), which read whole would leave the process that much bigger, and a
        # Python loop over every line of every RECORD cost 12-16 ms of each start-up of a project that no
        # installed distribution provides (the usual case), for about 150 distributions installed.
        with fh:
            if not _mentions(fh, needle):
                return False
            fh.seek(0)
            for line in fh:
                if needle in line:
                    path = line.decode("utf-8", "replace").strip()
                    if _top_name(path.rsplit(",", 2)[0] if "," in path else path) == package:
                        return True
        return False
    return False


def _mentions(fh: Any, needle: bytes, chunk_size: int = 1 << 16) -> bool:
    """Whether the binary file ``fh`` contains ``needle``, read in chunks (an occurrence across two chunks too)."""
    keep = len(needle) - 1
    tail = b""
    while chunk := fh.read(chunk_size):
        window = tail + chunk
        if needle in window:
            return True
        tail = window[len(window) - keep :] if keep else b""
    return False


def _top_name(path: str) -> str:
    head, slash, _ = path.partition("/")
    if slash:
        return head
    return inspect.getmodulename(head) or head


def _version(folder: str) -> str | None:
    text = _read(folder, "METADATA") or _read(folder, "PKG-INFO") or ""
    for line in text.splitlines():
        if line.startswith("Version:"):
            return line.partition(":")[2].strip() or None
        if not line:  # the headers end at the first empty line
            break
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
    debug: bool = False,
) -> dict[str, Resolved]:
    """Name, version and environment by the precedence in the module docstring.

    Args:
        otel_service_name, service_name, service_version, service_environment: the value set explicitly
            (with its source), or None when the option is not set.
        resource_attributes: the parsed ``OTEL_RESOURCE_ATTRIBUTES``; resource_source: where that came from.
        settings_module: ``DJANGO_SETTINGS_MODULE``.
        version_of: finds the installed version of an import package (tests pass a fake).
        debug: ``settings.DEBUG``: the default environment is ``development`` instead of ``production``.

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
        or (Resolved("development", "default: DEBUG is on") if debug else Resolved(DEFAULT_ENVIRONMENT, "default"))
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
