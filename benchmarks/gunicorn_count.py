"""gunicorn configuration for ``benchmarks.instructions --gunicorn``: each connection the worker serves after
the first ``BENCH_WARMUP`` runs inside ``sys.call_tracing``, the function callgrind collects in
(``--toggle-collect=sys_call_tracing``), so the count is exactly the counted requests: gunicorn's parsing,
Django, the response's headers and body, the close, and nothing of start-up or the accept loop."""

import os
import sys

workers = 1
timeout = 600
loglevel = "warning"


def post_worker_init(worker):
    handle = worker.handle
    warmup = int(os.environ.get("BENCH_WARMUP", "100"))  # count_gunicorn() sets it
    served = 0

    def counted(listener, client, addr):
        nonlocal served
        served += 1
        if served <= warmup:
            return handle(listener, client, addr)
        return sys.call_tracing(handle, (listener, client, addr))

    worker.handle = counted
