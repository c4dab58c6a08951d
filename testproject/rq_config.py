"""Configuration module for RQ's own worker command: ``rq worker -c testproject.rq_config default reports``.

RQ imports it before the worker starts, so Django (and django_observe) is set up once, in the worker's main
process, and every work horse forked from it inherits that.
"""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")
django.setup()

REDIS_URL = os.environ.get("TESTPROJECT_RQ_URL", "redis://127.0.0.1:6379/0")
