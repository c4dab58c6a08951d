"""Parsers of option values: a raw value (a Python value from settings, or a str from the environment) -> a clean value.

Each raises ``ValueError`` with a message that states the accepted values; the loader prefixes
the setting's name and appends the value received. Pure functions: no Django here.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from django_observe.identity import parse_resource_attributes
from django_observe.objectives import Objective, parse_objectives

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def boolean(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
        return raw.strip().lower() in _TRUE
    raise ValueError("must be a boolean (true/false, 1/0, yes/no, on/off)")


def number(minimum: float | None = None, maximum: float | None = None) -> Callable[[Any], float]:
    def parse(raw: Any) -> float:
        try:
            if isinstance(raw, bool):
                raise TypeError
            value = float(raw)
        except (TypeError, ValueError):
            raise ValueError(f"must be a number{_range(minimum, maximum)}") from None
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise ValueError(f"must be a number{_range(minimum, maximum)}")
        return value

    return parse


def integer(minimum: int | None = None, maximum: int | None = None) -> Callable[[Any], int]:
    def parse(raw: Any) -> int:
        try:
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise TypeError
            value = int(raw)
        except (TypeError, ValueError):
            raise ValueError(f"must be an integer{_range(minimum, maximum)}") from None
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise ValueError(f"must be an integer{_range(minimum, maximum)}")
        return value

    return parse


def _range(minimum: float | None, maximum: float | None) -> str:
    if minimum is not None and maximum is not None:
        return f" from {minimum:g} to {maximum:g}"
    if minimum is not None:
        return f" >= {minimum:g}"
    if maximum is not None:
        return f" <= {maximum:g}"
    return ""


@dataclasses.dataclass(frozen=True)
class Choice:
    """Case-insensitive choice among ``accepted``; ``aliases`` map extra spellings (``"warn"`` -> ``"warning"``)."""

    accepted: tuple[str, ...]
    aliases: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def __call__(self, raw: Any) -> str:
        if isinstance(raw, str):
            value = raw.strip().lower()
            value = self.aliases.get(value, value)
            if value in self.accepted:
                return value
        shown = ", ".join(f'"{a}"' for a in (*self.accepted, *self.aliases))
        raise ValueError(f"must be one of {shown}")


def choice(*accepted: str, aliases: Mapping[str, str] | None = None) -> Choice:
    """Case-insensitive choice among ``accepted``; ``aliases`` map extra spellings."""
    return Choice(accepted, dict(aliases or {}))


def text(raw: Any) -> str:
    if isinstance(raw, str):
        return raw
    raise ValueError("must be a string")


def optional_number(minimum: float | None = None) -> Callable[[Any], float | None]:
    """A number (at least ``minimum``) or None (unset: an empty string from the environment)."""
    inner = number(minimum)

    def parse(raw: Any) -> float | None:
        if raw is None or raw == "":
            return None
        return inner(raw)

    return parse


def optional_integer(minimum: int | None = None, maximum: int | None = None) -> Callable[[Any], int | None]:
    """An integer in range or None (unset: an empty string from the environment)."""
    inner = integer(minimum, maximum)

    def parse(raw: Any) -> int | None:
        if raw is None or raw == "":
            return None
        return inner(raw)

    return parse


@dataclasses.dataclass(frozen=True)
class OptionalChoice:
    """A :class:`Choice` or None (unset: None or an empty string)."""

    inner: Choice

    def __call__(self, raw: Any) -> str | None:
        if raw is None or raw == "":
            return None
        return self.inner(raw)


def optional_choice(*accepted: str) -> OptionalChoice:
    """Case-insensitive choice among ``accepted``, or None when unset."""
    return OptionalChoice(Choice(accepted))


def optional_text(raw: Any) -> str | None:
    if raw is None or raw == "":
        return None
    return text(raw)


def text_list(raw: Any) -> tuple[str, ...]:
    """A list of strings; from the environment, comma-separated."""
    if isinstance(raw, str):
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if isinstance(raw, (list, tuple)) and all(isinstance(v, str) for v in raw):
        return tuple(raw)
    raise ValueError("must be a list of strings (comma-separated in the environment)")


def mapping(raw: Any) -> dict[str, Any]:
    """A dict; from the environment, a JSON object."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError:
            raise ValueError("must be a JSON object") from None
    if isinstance(raw, Mapping) and all(isinstance(k, str) for k in raw):
        return dict(raw)
    raise ValueError("must be a dict with string keys (a JSON object in the environment)")


def resource_attributes(raw: Any) -> dict[str, str]:
    """OpenTelemetry resource attributes: ``key=value,key=value`` (percent-encoded values), or a dict of strings."""
    if isinstance(raw, str):
        return parse_resource_attributes(raw)
    if isinstance(raw, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
        return dict(raw)
    raise ValueError('must be "key=value,key=value" text or a dict of strings')


def regex(raw: Any) -> str:
    """A regular expression (compiled once at startup to validate it)."""
    if not isinstance(raw, str) or not raw:
        raise ValueError("must be a non-empty regular expression string")
    try:
        re.compile(raw)
    except re.error as exc:
        raise ValueError(f"must be a valid regular expression ({exc})") from None
    return raw


def regex_list(raw: Any) -> tuple[str, ...]:
    """Regular expressions (each compiled once at startup to validate it); from the environment, comma-separated."""
    try:
        patterns = text_list(raw)
    except ValueError:
        raise ValueError("must be a list of regular expressions (comma-separated in the environment)") from None
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"must be a list of valid regular expressions ({pattern!r}: {exc})") from None
    return patterns


def attribute_names(raw: Any) -> tuple[str, ...]:
    """Python attribute names (``path_info``, ``content_type``); from the environment, comma-separated."""
    try:
        names = text_list(raw)
    except ValueError:
        names = None
    if names is None or not all(n.isidentifier() for n in names):
        raise ValueError("must be a list of attribute names (identifiers; comma-separated in the environment)")
    return names


def hook(raw: Any) -> Any:
    """A callable, or the dotted path of one (``"myproject.tracing.request_hook"``, imported at startup); or None."""
    if raw is None or raw == "":
        return None
    if callable(raw):
        return raw
    if isinstance(raw, str) and re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)+", raw.strip()):
        return raw.strip()
    raise ValueError('must be a callable or the dotted path of one, e.g. "myproject.tracing.request_hook"')


def key_names(raw: Any) -> tuple[str, ...]:
    """Names of keys (dict keys, log fields, headers), lower-cased; from the environment, comma-separated."""
    try:
        names = text_list(raw)
    except ValueError:
        names = None
    if names is None or not all(re.fullmatch(r"[A-Za-z0-9_.-]{1,128}", n) for n in names):
        raise ValueError("must be a list of key names (letters, digits, _ . -; comma-separated in the environment)")
    return tuple(n.lower() for n in names)


def route_patterns(raw: Any) -> tuple[str, ...]:
    """Django route patterns with at least one ``<placeholder>``, not starting with one
    (``reset/<uidb64>/<token>/``); from the environment, comma-separated."""
    routes = tuple(r.lstrip("^/") for r in text_list(raw))
    for route in routes:
        if not re.search(r"<(?:\w+:)?\w+>", route) or route.startswith("<"):
            raise ValueError(
                f"must be a list of URL route patterns, each with a literal part first and then at least one "
                f"<placeholder> (like 'reset/<uidb64>/<token>/'); {route!r} is not"
            )
    return routes


def header_list(raw: Any) -> tuple[str, ...]:
    """HTTP header names (at least one)."""
    names = text_list(raw)
    if not names or not all(re.fullmatch(r"[A-Za-z0-9-]{1,64}", n) for n in names):
        raise ValueError("must be a non-empty list of HTTP header names (letters, digits, dashes)")
    return names


def host_patterns(raw: Any) -> tuple[str, ...]:
    """Host allowlist entries: ``*``, exact hosts (``api.internal``, ``10.0.0.7``, ``::1``) or ``*.example.com``.

    Entries are lower-cased; brackets around an IPv6 address and a trailing dot are dropped.
    """
    values = text_list(raw)
    if not values:
        raise ValueError(
            'must list at least one host ("*" for all); set CORRELATION_PROPAGATE to false to send the header nowhere'
        )
    label = r"(?!-)[a-z0-9_-]{1,63}(?<!-)"
    hostname = re.compile(rf"{label}(\.{label})*")
    clean = []
    for value in values:
        host = value.strip().lower().rstrip(".")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if host == "*":
            clean.append(host)
            continue
        name = host[2:] if host.startswith("*.") else host
        try:
            ipaddress.ip_address(name)
            is_ip = True
        except ValueError:
            is_ip = False
        if is_ip and name == host or (not is_ip and len(name) <= 253 and hostname.fullmatch(name)):
            clean.append(host)
            continue
        raise ValueError(
            'must be a list of hosts: "*" (all), exact host names or IP addresses ("api.internal", "10.0.0.7"), or '
            f'"*.example.com" for every subdomain; no scheme, port, path or other wildcard ({value!r} is none of these)'
        )
    return tuple(clean)


def url(raw: Any) -> str | None:
    """An http(s) URL with a host, or None."""
    if raw is None or raw == "":
        return None
    if isinstance(raw, str):
        try:
            parts = urlsplit(raw)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            parts = None
        if parts is not None and parts.scheme in ("http", "https") and parts.hostname:
            return raw
    raise ValueError("must be an http:// or https:// URL with a host, e.g. http://collector:4318")


def metric_prefix(raw: Any) -> str:
    if isinstance(raw, str) and (raw == "" or re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", raw)):
        return raw
    raise ValueError("must be empty or a Prometheus name (letters, digits, underscores; not starting with a digit)")


def buckets(raw: Any) -> tuple[float, ...]:
    values = text_list(raw) if isinstance(raw, str) else raw
    try:
        result = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError("must be a list of increasing positive numbers") from None
    if not result or any(b <= 0 for b in result) or any(a >= b for a, b in zip(result, result[1:], strict=False)):
        raise ValueError("must be a list of increasing positive numbers")
    return result


def networks(raw: Any) -> tuple[str, ...]:
    values = text_list(raw)
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ValueError(f"must be IP addresses or networks (CIDR); {value!r} is neither") from None
    return values


def sample_rates(raw: Any) -> dict[str, float]:
    """Keep rates of request lines: ``{"/path/prefix" or "route pattern": rate from 0 to 1}``.

    From the environment, a JSON object.
    """
    rates = mapping(raw)
    for key, value in rates.items():
        if not key.strip():
            raise ValueError("keys must be path prefixes (starting with /) or route patterns, got an empty key")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ValueError(f"values must be keep rates from 0 to 1 (0.1 keeps 1 line in 10); {key!r} has {value!r}")
        rates[key] = float(value)
    return rates


def check_list(raw: Any) -> tuple[str | Mapping[str, Any], ...]:
    """Custom health checks: dotted paths or dicts ``{"path": ..., "id": ..., ...}``."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw.strip().startswith("[") else text_list(raw)
        except json.JSONDecodeError:
            raise ValueError("must be a JSON list or comma-separated dotted paths") from None
    if not isinstance(raw, (list, tuple)):
        raise ValueError('must be a list of dotted paths or dicts with a "path" key')
    allowed = {"path", "id", "critical", "timeout", "options"}
    for item in raw:
        if isinstance(item, str):
            continue
        if not isinstance(item, Mapping) or not isinstance(item.get("path"), str):
            raise ValueError('must be a list of dotted paths or dicts with a "path" key')
        extra = set(item) - allowed
        if extra:
            raise ValueError(f"entries accept the keys {sorted(allowed)}, got unknown {sorted(extra)}")
    return tuple(raw)


def slo_list(raw: Any) -> tuple[Objective, ...]:
    """Service level objectives: a list of dicts; from the environment, a JSON list.

    See ``django_observe.objectives`` for the keys.
    """
    return parse_objectives(raw)


slo_list.shows_value = True  # type: ignore[attr-defined]  # its messages quote the bad entry, not the whole list


def url_template(raw: Any) -> str | None:
    """An http(s) URL holding ``{trace_id}``, or None."""
    if raw is None or raw == "":
        return None
    if isinstance(raw, str) and "{trace_id}" in raw:
        try:
            url(raw.replace("{trace_id}", "0"))
        except ValueError:
            pass
        else:
            return raw
    raise ValueError(
        'must be an http:// or https:// URL holding {trace_id}, e.g. "http://jaeger:16686/trace/{trace_id}"'
    )
