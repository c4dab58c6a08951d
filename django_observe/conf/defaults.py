"""Computed defaults: functions of the Django settings object, used when an option is not set.

Each docstring is the default's text in the configuration reference (Markdown, one line).
"""

from __future__ import annotations

import os
from typing import Any


def log_format_from_debug(settings: Any) -> str:
    """`"text"` when `DEBUG`, else `"json"`"""
    return "text" if getattr(settings, "DEBUG", False) else "json"


def metrics_address_from_debug(settings: Any) -> str:
    """`"127.0.0.1"` when `DEBUG` (development: only this machine scrapes), else `"0.0.0.0"`"""
    return "127.0.0.1" if getattr(settings, "DEBUG", False) else "0.0.0.0"


def true_under_debug(settings: Any) -> bool:
    """`true` when `DEBUG`, else `false`"""
    return bool(getattr(settings, "DEBUG", False))


def disk_paths_with_media_root(settings: Any) -> tuple[str, ...]:
    """`["."]`, plus `MEDIA_ROOT` if set"""
    media_root = getattr(settings, "MEDIA_ROOT", "")
    return (".", str(media_root)) if media_root else (".",)


def redis_url_setting(settings: Any) -> tuple[str, ...]:
    """`REDIS_URL` (setting, else environment variable) if set, else `[]`"""
    url = getattr(settings, "REDIS_URL", None) or os.environ.get("REDIS_URL")
    return (url,) if url else ()


def gcp_project_from_environment(settings: Any) -> str | None:
    """`GOOGLE_CLOUD_PROJECT` if set, else none"""
    return os.environ.get("GOOGLE_CLOUD_PROJECT") or None
