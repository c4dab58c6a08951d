"""Which benchmark configurations can run here (their packages are installed)."""

import importlib.util

NEEDED = {
    "peers": ["django_guid", "django_structlog", "django_prometheus"],
    "observe_otel": ["opentelemetry.sdk"],
    "otel_raw": ["opentelemetry.instrumentation.django"],
    "floor": ["orjson"],
}


def available(config: str) -> bool:
    try:
        return all(importlib.util.find_spec(m) is not None for m in NEEDED.get(config, []))
    except ModuleNotFoundError:
        return False
