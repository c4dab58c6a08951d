"""A Celery app for the footprint benchmark's prefork child (``benchmarks/footprint.py``): a filesystem
broker in ``BENCH_CELERY_DIR``, so no service is needed.

    python -m benchmarks.project.celery_app START END    # send tasks START..END-1 (the last one marks)
"""

import os
import sys
from pathlib import Path

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.project.settings")

app = Celery("bench")
folder = os.environ.get("BENCH_CELERY_DIR", "/tmp/bench-celery")
# The sender writes into a staging folder the benchmark then renames into the worker's (the filesystem
# transport writes a message in place, and a worker reading it mid-write dies on the empty JSON).
app.conf.update(
    broker_url="filesystem://",
    broker_transport_options={
        "data_folder_in": folder,
        "data_folder_out": os.environ.get("BENCH_CELERY_OUT", folder),
        # Beside the messages: kombu's default is "control" in the working directory (the checkout).
        "control_folder": os.path.join(folder, "control"),
    },
    task_ignore_result=True,
    worker_hijack_root_logger=False,
)


@app.task(name="bench.work")
def work(index: int, mark: bool = False) -> int:
    if mark:
        Path(os.environ["BENCH_MARKS"], str(index)).touch()
    return index * 2


if __name__ == "__main__":
    start, end = int(sys.argv[1]), int(sys.argv[2])
    with app.producer_or_acquire() as producer:
        for i in range(start, end):
            work.apply_async((i, i == end - 1), producer=producer)
