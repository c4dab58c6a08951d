"""The one place that reads Django settings and the environment.

Every option is a field of :class:`ObserveConfig` (``options.py``); its metadata says how the raw
value is parsed (``parsers.py``) and what it means. ``load_config()`` (``loading.py``) reads and
validates them; ``reference_markdown()`` (``reference.py``) renders docs/configuration.md from the
same metadata.

Subsystems receive the frozen config object; they never read ``django.conf.settings`` themselves.
"""

from __future__ import annotations

from .loading import (
    CONFIGURATION_URL,
    DOCS_URL,
    ConfigError,
    InvalidConfiguration,
    get_config,
    load_config,
    loaded,
    redacted,
    shown_value,
)
from .options import ObserveConfig, option, option_fields, option_names
from .parsers import host_patterns as host_patterns  # named in propagation's docs
from .reference import reference_markdown

__all__ = [
    "CONFIGURATION_URL",
    "DOCS_URL",
    "ConfigError",
    "InvalidConfiguration",
    "ObserveConfig",
    "get_config",
    "load_config",
    "loaded",
    "option",
    "option_fields",
    "option_names",
    "redacted",
    "reference_markdown",
    "shown_value",
]
