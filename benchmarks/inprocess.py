"""Drive Django's WSGI handler in-process for one configuration (run by benchmarks/run.py in a subprocess).

BENCH_CONFIG=observe python -m benchmarks.inprocess /ping 2000 5 result.json    # µs per request
BENCH_CONFIG=observe python -m benchmarks.inprocess /ping 200 count FLAG        # for benchmarks.instructions

In ``count`` mode the N requests run inside ``sys.call_tracing`` (which tracing-free code never calls), so
``valgrind --tool=callgrind --collect-atstart=no --toggle-collect=sys_call_tracing`` counts exactly them.
With FLAG other than ``-`` it writes ``FLAG.ready`` after warming up and waits for ``FLAG.go``: the counter
switches valgrind's instrumentation on in between, so start-up runs uninstrumented.
"""

import io
import json
import os
import sys
import time
from collections.abc import Callable


def setup_django() -> None:
    """``django.setup()`` for the configuration in ``BENCH_CONFIG``."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.project.settings")
    if os.environ.get("BENCH_MULTIPROCESS") == "1":
        # What django_observe sees in a gunicorn worker (its program name, gunicorn's arbiter imported), so
        # this process is a web process and records metrics in multiprocess mode.
        import gunicorn.arbiter  # noqa: F401

        sys.argv[0] = "gunicorn"
    import django

    django.setup()


def request_driver(path: str, setup: bool = True) -> Callable[[], str]:
    """Set Django up (unless ``setup`` is false: the caller did); returns a function that serves one GET of
    ``path`` and returns the status line."""
    if setup:
        setup_django()
    from django.core.handlers.wsgi import WSGIHandler

    handler = WSGIHandler()
    base = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "127.0.0.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }
    statuses = []

    def start_response(status, headers, exc_info=None):
        statuses.append(status)

    def call() -> str:
        environ = dict(base)
        environ["wsgi.input"] = io.BytesIO(b"")
        response = handler(environ, start_response)
        for _ in response:
            pass
        response.close()
        return statuses.pop()

    return call


def warm_up(call: Callable[[], str], path: str, n: int) -> None:
    for _ in range(n):
        status = call()
    if not status.startswith("200"):
        raise SystemExit(f"{path} answered {status}")


def main(path: str, n: int, repeats: str, out: str) -> None:
    call = request_driver(path)
    if repeats == "count":
        warm_up(call, path, 50)
        if out != "-":  # the counter switches instrumentation on now (valgrind --instr-atstart=no)
            with open(out + ".ready", "w"):
                pass
            while not os.path.exists(out + ".go"):
                time.sleep(0.01)
            warm_up(call, path, 5)

        def loop() -> None:
            for _ in range(n):
                call()

        sys.call_tracing(loop, ())
        return
    warm_up(call, path, min(500, n))
    samples = []
    for _ in range(int(repeats)):
        start = time.perf_counter_ns()
        for _ in range(n):
            call()
        samples.append((time.perf_counter_ns() - start) / n / 1000)
    with open(out, "w") as fh:
        json.dump({"samples_us": samples}, fh)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4])
