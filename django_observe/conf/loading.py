"""Read Django settings and the environment into a validated :class:`ObserveConfig`.

Where a value comes from, first match wins:

1. an environment variable of the same name (``HEALTH_TIMEOUT=5``);
2. for the few top-level options (``LOG_LEVEL``, ``LOG_FORMAT``, ``OTEL_ENABLED``), the Django setting
   of that name;
3. the key of that name in ``settings.DJANGO_OBSERVE``;
4. the default (computed from the settings for a few options, see ``defaults.py``).

Values quoted back (error messages, ``manage.py observe_config``) never show a URL password or a value
under a secret-looking key.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from django_observe import identity, runtime
from django_observe.objectives import threshold_problem
from django_observe.redaction import REDACTED, is_secret_key, redact_text, redact_url

from .options import ObserveConfig, option_fields

__all__ = [
    "CONFIGURATION_URL",
    "DOCS_URL",
    "ConfigError",
    "InvalidConfiguration",
    "get_config",
    "load_config",
    "loaded",
    "redacted",
    "shown_value",
]

# The documentation's public address (mkdocs.yml's site_url, the package's Project-URLs): a pip install has no
# docs/ folder, so messages link here.
DOCS_URL = "https://django-observe.readthedocs.io/en/latest/"
CONFIGURATION_URL = DOCS_URL + "configuration/"


@dataclasses.dataclass(frozen=True)
class ConfigError:
    """One invalid setting: where it came from and what is accepted.

    URL passwords are removed from the message and hint on creation, so no caller can put one into a
    startup error or a system check.
    """

    setting: str
    message: str
    hint: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "message", redact_url(self.message))
        object.__setattr__(self, "hint", redact_url(self.hint))

    def __str__(self) -> str:
        return self.message


class InvalidConfiguration(ImproperlyConfigured):
    """Raised by :func:`load_config`; ``errors`` lists every invalid setting."""

    def __init__(self, errors: list[ConfigError]):
        self.errors = errors
        super().__init__(
            "django_observe configuration is invalid:\n"
            + "\n".join(f"  - {e}" for e in errors)
            + f"\nAccepted values of every setting: {CONFIGURATION_URL}"
        )


def loaded(config: object) -> ObserveConfig:
    """``config`` as the :class:`ObserveConfig` it is.

    A runtime types its configuration with its own protocol (``runtime.Config``: the options read straight
    off it); the wiring, the system checks and the commands, which need every option, narrow it here.

    Raises:
        TypeError: ``config`` is not an :class:`ObserveConfig`.
    """
    if not isinstance(config, ObserveConfig):
        raise TypeError(f"expected an ObserveConfig, got {type(config).__name__}")
    return config


def get_config() -> ObserveConfig:
    """The validated configuration of this process (:func:`django_observe.runtime.get_config`, narrowed).

    Raises:
        RuntimeError: django_observe is not set up.
        ImproperlyConfigured: the configuration is invalid.
    """
    return loaded(runtime.get_config())


def redacted(value: Any, secret_keys: Iterable[str] = ()) -> Any:
    """``value`` with URL passwords removed from its strings and the values under secret keys replaced.

    Args:
        value: a raw or clean option value (strings, lists, tuples, dicts, numbers, other objects).
        secret_keys: extra key names (lower case) treated as secret besides the built-in ones.
    """
    extra = frozenset(k.lower() for k in secret_keys)
    return _redacted(value, extra)


def _redacted(value: Any, extra: frozenset[str]) -> Any:
    if isinstance(value, str):
        # Text that did not parse (a JSON object from the environment, say): the log redaction's rules, with
        # its bracketed form keys and encoded separators; unquoted host:port is left alone.
        return redact_text(value, extra)
    if isinstance(value, Mapping):
        return {
            key: REDACTED
            if isinstance(key, str) and (is_secret_key(key) or key.lower() in extra)
            else _redacted(item, extra)
            for key, item in value.items()
        }
    if type(value) in (list, tuple):
        return type(value)(_redacted(item, extra) for item in value)
    return value


def shown_value(value: Any, *, secret: bool = False, secret_keys: Iterable[str] = ()) -> str:
    """How a value is quoted back to a person: ``<hidden>`` for a secret option, else its redacted repr."""
    if secret:
        return "<hidden>"
    return repr(redacted(value, secret_keys))


def load_config(settings: Any = None, environ: Mapping[str, str] | None = None) -> ObserveConfig:
    """Read, validate and freeze the configuration.

    Args:
        settings: a Django settings object (default: ``django.conf.settings``).
        environ: the environment (default: ``os.environ``).

    Raises:
        InvalidConfiguration: naming each bad setting, its value (redacted) and the accepted values.
    """
    if settings is None:
        from django.conf import settings as django_settings

        settings = django_settings
    if environ is None:
        environ = os.environ

    errors: list[ConfigError] = []
    user = getattr(settings, "DJANGO_OBSERVE", None) or {}
    if not isinstance(user, Mapping):
        errors.append(ConfigError("DJANGO_OBSERVE", f"DJANGO_OBSERVE must be a dict, got {type(user).__name__}"))
        user = {}

    known = {f.name.upper(): f for f in option_fields()}
    for key in user:
        field = known.get(key) if isinstance(key, str) else None
        if field is None or field.metadata["top_level"]:
            close = difflib.get_close_matches(str(key), [k for k, f in known.items() if not f.metadata["top_level"]], 1)
            hint = f' (did you mean "{close[0]}"?)' if close else ""
            where = " is a top-level setting, not a DJANGO_OBSERVE key" if field is not None else " is not an option"
            errors.append(
                ConfigError(
                    f'DJANGO_OBSERVE["{key}"]',
                    f'DJANGO_OBSERVE["{key}"]{where}{hint}; see the configuration reference for accepted keys',
                )
            )

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    failed: list[tuple[str, str, Any, dataclasses.Field[Any]]] = []
    for field in option_fields():
        name = field.name.upper()
        meta = field.metadata
        if name in environ:
            raw, source = environ[name], f"environment variable {name}"
        elif meta["top_level"] and hasattr(settings, name):
            raw, source = getattr(settings, name), f"settings.{name}"
        elif name in user:
            raw, source = user[name], f'DJANGO_OBSERVE["{name}"]'
        else:
            default_from = meta["default_from"]
            values[field.name] = default_from(settings) if default_from else _default(field)
            sources[field.name] = "default"
            continue
        try:
            values[field.name] = meta["parse"](raw)
        except ValueError as exc:
            failed.append((source, str(exc), raw, field))
        sources[field.name] = source

    # Messages are written once every value is read, so a bad value is redacted with SECRET_KEY_NAMES too.
    secret_keys = values.get("secret_key_names", ())
    for source, problem, raw, field in failed:
        if getattr(field.metadata["parse"], "shows_value", False):
            errors.append(ConfigError(source, f"{source} {problem}"))
        else:
            shown = shown_value(raw, secret=field.metadata["secret"], secret_keys=secret_keys)
            errors.append(ConfigError(source, f"{source} {problem}, got {shown}"))

    if not errors:
        errors.extend(_cross_check(values, sources))
        errors.extend(resolve_tracing(values, sources))
    if errors:
        raise InvalidConfiguration(errors)
    _resolve_identity(values, sources, settings, environ)
    return ObserveConfig(**values, sources=sources)


def _resolve_identity(
    values: dict[str, Any], sources: dict[str, str], settings: Any, environ: Mapping[str, str]
) -> None:
    """Fill SERVICE_NAME, SERVICE_VERSION and SERVICE_ENVIRONMENT by the precedence of ``identity.resolve``."""

    def explicit(field: str) -> identity.Resolved | None:
        if sources[field] == "default" or not values[field]:
            return None
        return identity.Resolved(values[field], sources[field])

    settings_module = getattr(settings, "SETTINGS_MODULE", None) or environ.get("DJANGO_SETTINGS_MODULE")
    resolved = identity.resolve(
        otel_service_name=explicit("otel_service_name"),
        service_name=explicit("service_name"),
        service_version=explicit("service_version"),
        service_environment=explicit("service_environment"),
        resource_attributes=values["otel_resource_attributes"],
        resource_source=(
            "OTEL_RESOURCE_ATTRIBUTES"
            if sources["otel_resource_attributes"] == "default"
            else sources["otel_resource_attributes"]
        ),
        settings_module=settings_module if isinstance(settings_module, str) else None,
        debug=bool(getattr(settings, "DEBUG", False)),
    )
    fields = (("name", "service_name"), ("version", "service_version"), ("environment", "service_environment"))
    for key, field in fields:
        values[field] = resolved[key].value
        sources[field] = resolved[key].source


OTLP_PORTS = {"grpc": 4317, "http/protobuf": 4318}


def resolve_tracing(values: dict[str, Any], sources: dict[str, str]) -> list[ConfigError]:
    """Apply the seed-style tracing settings to the OTLP options, in place; the errors of a contradiction.

    - ``TRACING="opentelemetry"``/``"jaeger"`` turns tracing on when ``OTEL_ENABLED`` is not set (or set at a
      lower precedence: a setting under an environment variable); ``"none"`` keeps it off. The two set at the
      same level and disagreeing is an error.
    - ``OTEL_EXPORTER_JAEGER_AGENT_HOST`` (or ``TRACING="jaeger"``) without ``OTEL_EXPORTER_OTLP_ENDPOINT``:
      the endpoint becomes that host's OTLP port (Jaeger serves OTLP on 4317 gRPC and 4318 HTTP; its agent's
      UDP/Thrift port is not spoken).
    - An endpoint on port 4317 with no protocol set: gRPC (4317 is OTLP/gRPC's port; http/protobuf there
      fails with a byte dump).

    Each derived value's source says how it was understood (the ``tracing enabled`` start-up line shows it).
    """
    errors: list[ConfigError] = []
    tracing = values.get("tracing")
    if tracing is not None:
        wanted = tracing != "none"
        # An environment variable beats a setting (the loader's precedence): TRACING in the environment
        # decides over OTEL_ENABLED in settings, not over OTEL_ENABLED in the environment.
        env_tracing = sources["tracing"].startswith("environment")
        if sources["otel_enabled"] == "default" or (
            env_tracing and not sources["otel_enabled"].startswith("environment")
        ):
            values["otel_enabled"] = wanted
            sources["otel_enabled"] = f"{sources['tracing']}={tracing!r}"
        elif values["otel_enabled"] != wanted:
            errors.append(
                ConfigError(
                    sources["tracing"],
                    f"{sources['tracing']} is {tracing!r} but {sources['otel_enabled']} is "
                    f"{values['otel_enabled']}: set one of them, or make them agree",
                )
            )
    host, port = values.get("otel_exporter_jaeger_agent_host"), values.get("otel_exporter_jaeger_agent_port")
    protocol_set = sources["otel_exporter_otlp_protocol"] != "default"
    if (host or port or tracing == "jaeger") and values["otel_exporter_otlp_endpoint"] is None:
        if port in OTLP_PORTS.values() and not protocol_set:
            values["otel_exporter_otlp_protocol"] = "grpc" if port == 4317 else "http/protobuf"
            sources["otel_exporter_otlp_protocol"] = f"default for Jaeger's OTLP port {port}"
        protocol = values["otel_exporter_otlp_protocol"]
        otlp_port = port if port in OTLP_PORTS.values() else OTLP_PORTS[protocol]
        shown_host = host or "localhost"
        values["otel_exporter_otlp_endpoint"] = f"http://{shown_host}:{otlp_port}"
        how = (
            f"OTEL_EXPORTER_JAEGER_AGENT_HOST={host}"
            if host
            else (f"OTEL_EXPORTER_JAEGER_AGENT_PORT={port}" if port else f"{sources['tracing']}='jaeger'")
        )
        unused = f"; agent port {port} (UDP, Thrift) not used" if port and port not in OTLP_PORTS.values() else ""
        sources["otel_exporter_otlp_endpoint"] = f"{how}: Jaeger's OTLP port {otlp_port}{unused}"
    endpoint = values["otel_exporter_otlp_endpoint"]
    if endpoint and not protocol_set and values["otel_exporter_otlp_protocol"] != "grpc":
        try:
            endpoint_port = urlsplit(endpoint).port
        except ValueError:
            endpoint_port = None
        if endpoint_port == 4317:
            values["otel_exporter_otlp_protocol"] = "grpc"
            sources["otel_exporter_otlp_protocol"] = "default for an endpoint on port 4317, OTLP/gRPC's"
    return errors


def _default(field: dataclasses.Field[Any]) -> Any:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def _cross_check(values: dict[str, Any], sources: dict[str, str]) -> list[ConfigError]:
    """Rules that involve several options."""
    errors = []
    sample = values["correlation_id_prefix"] + "0" * 24
    if re.search(r"[\x00-\x20\x7f]", values["correlation_id_prefix"]):
        errors.append(
            ConfigError(
                sources["correlation_id_prefix"],
                f"CORRELATION_ID_PREFIX {values['correlation_id_prefix']!r} must not contain spaces or control "
                "characters (generated IDs go into response headers and log lines as they are)",
            )
        )
    elif not re.fullmatch(values["correlation_id_pattern"], sample):
        errors.append(
            ConfigError(
                sources["correlation_id_prefix"],
                f"CORRELATION_ID_PREFIX {values['correlation_id_prefix']!r} makes generated IDs ({sample!r}) "
                f"that CORRELATION_ID_PATTERN {values['correlation_id_pattern']!r} rejects; change one of them",
            )
        )
    for index, objective in enumerate(values["slos"]):
        problem = threshold_problem(objective, values["metrics_buckets"])
        if problem:
            errors.append(
                ConfigError(sources["slos"], f'{sources["slos"]} entry {index} ("{objective.name}"): {problem}')
            )
    return errors
