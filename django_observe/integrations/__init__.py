"""Wiring into other libraries: Celery signals, gunicorn hooks, outbound HTTP clients.

Each module connects its receivers or patches once per process; the receivers read the current runtime
(``django_observe.runtime.current()``) when they run, so a rebuilt runtime applies without reconnecting.
"""
