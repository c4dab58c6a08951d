"""The floor: the least a hand-written middleware can do and still give a request its observability.

It reads (or generates) the correlation ID into a context variable, returns it in the response header,
moves an in-flight gauge, observes one route/method/status histogram and writes one JSON line rendered
with orjson to a null stream. No configuration, no validation beyond a length cap, no redaction, no
sampling, no exception handling: a lower bound to measure django_observe's overhead against.
"""

import contextvars
import os
import secrets
import time

import orjson
from prometheus_client import Gauge, Histogram

correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("floor_correlation_id", default=None)
IN_FLIGHT = Gauge("floor_requests_in_flight", "Requests being served.")
DURATION = Histogram("floor_request_duration_seconds", "Request duration.", ["route", "method", "status"])
NULL = open(os.devnull, "wb")  # noqa: SIM115 - lives as long as the process


def floor_middleware(get_response):
    def middleware(request):
        start = time.perf_counter_ns()
        cid = request.META.get("HTTP_X_CORRELATION_ID")
        if not cid or len(cid) > 128:
            cid = "req_" + secrets.token_hex(12)
        token = correlation_id.set(cid)
        IN_FLIGHT.inc()
        try:
            response = get_response(request)
        finally:
            IN_FLIGHT.dec()
        response["X-Correlation-ID"] = cid
        match = request.resolver_match
        route = match.route if match is not None else "__unmatched__"
        status = response.status_code
        seconds = (time.perf_counter_ns() - start) / 1e9
        DURATION.labels(route, request.method, str(status)).observe(seconds)
        NULL.write(
            orjson.dumps(
                {
                    "timestamp": time.time(),
                    "level": "INFO",
                    "message": f"{request.method} {request.path}",
                    "correlation_id": cid,
                    "route": route,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 2),
                },
                option=orjson.OPT_APPEND_NEWLINE,
            )
        )
        correlation_id.reset(token)
        return response

    return middleware
