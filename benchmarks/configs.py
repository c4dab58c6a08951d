"""Which benchmark configurations can run here (their packages are installed), and their environment."""

import importlib.util
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

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


def environment(
    config: str,
    db: str,
    *,
    otlp_endpoint: str = "http://127.0.0.1:9",
    metrics_port: str = "0",
    options: dict[str, str] | None = None,
) -> dict[str, str]:
    """The environment of a benchmarked process: this one's, without its OpenTelemetry, logging and
    django_observe variables, plus the configuration's. ``otlp_endpoint``: where tracing exports (by default a
    port nobody listens on); ``options``: django_observe settings as environment variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LOG_", "DJANGO_OBSERVE"))}
    env.update(
        BENCH_CONFIG=config,
        BENCH_DB=db,
        DJANGO_SETTINGS_MODULE="benchmarks.project.settings",
        PYTHONPATH=str(ROOT),
        PYTHONHASHSEED="0",
        OTEL_EXPORTER_OTLP_ENDPOINT=otlp_endpoint,
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_TRACES_SAMPLER="always_on",
        METRICS_PORT=metrics_port,
        PROMETHEUS_METRICS_EXPORT_PORT_RANGE="",
        **(options or {}),
    )
    return env


def uvicorn_command(port: int) -> list[str]:
    """The benchmark project served by one uvicorn worker on ``port`` (no access log: the request line says
    more, and a server's own line is not what is measured)."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "benchmarks.project.asgi:application",
        "--workers",
        "1",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
