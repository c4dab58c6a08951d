"""Time Django's WSGI handler in-process for one configuration (run by benchmarks/run.py in a subprocess).

BENCH_CONFIG=observe python -m benchmarks.inprocess /ping 2000 5 result.json
"""

import io
import json
import os
import sys
import time


def main(path: str, n: int, repeats: int, out: str) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.project.settings")
    import django

    django.setup()
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

    def call():
        environ = dict(base)
        environ["wsgi.input"] = io.BytesIO(b"")
        response = handler(environ, start_response)
        for _ in response:
            pass
        response.close()

    for _ in range(min(500, n)):
        call()
    if not statuses[-1].startswith("200"):
        raise SystemExit(f"{path} answered {statuses[-1]}")
    samples = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        for _ in range(n):
            call()
        samples.append((time.perf_counter_ns() - start) / n / 1000)
    with open(out, "w") as fh:
        json.dump({"samples_us": samples}, fh)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
