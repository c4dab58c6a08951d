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

from django.core.exceptions import ImproperlyConfigured

from django_observe import identity
from django_observe.alerting.slo import threshold_problem
from django_observe.redaction import REDACTED, is_secret_key, redact_text, redact_url

from .options import ObserveConfig, option_fields

__all__ = ["ConfigError", "InvalidConfiguration", "load_config", "redacted", "shown_value"]


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
        super().__init__("django_observe configuration is invalid:\n" + "\n".join(f"  - {e}" for e in errors))


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
    )
    fields = (("name", "service_name"), ("version", "service_version"), ("environment", "service_environment"))
    for key, field in fields:
        values[field] = resolved[key].value
        sources[field] = resolved[key].source


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
