"""Server loggers are routed to django_observe's root handler, except the ones their server switched off."""

import io
import json
import logging

import pytest
from uvicorn.config import Config

from django_observe.logging.setup import SERVER_LOGGERS, configure_logging


@pytest.fixture
def logging_state():
    """The root's and the server loggers' state, restored after the test (configure_logging sets the process's)."""
    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in SERVER_LOGGERS)]
    saved = [(logger, list(logger.handlers), logger.propagate, logger.level) for logger in loggers]
    yield
    for logger, handlers, propagate, level in saved:
        logger.handlers, logger.propagate, logger.level = handlers, propagate, level


def configured_like_uvicorn(**options) -> None:
    """uvicorn's own logging set-up (``Config`` runs it), then ours, as when uvicorn loads the Django app."""
    Config("testproject.asgi:application", **options)
    configure_logging(level="info", fmt="json")


@pytest.mark.parametrize("times", [1, 2])
def test_no_access_log_stays_off_with_uvicorns_level(logging_state, times):
    for _ in range(times):  # a second configure_logging (a settings change) keeps it off too
        configured_like_uvicorn(access_log=False, log_level="warning")
    access = logging.getLogger("uvicorn.access")
    assert not access.hasHandlers()  # what uvicorn's protocols read to skip the access line
    assert (access.handlers, access.propagate, access.level) == ([], False, logging.WARNING)
    error = logging.getLogger("uvicorn.error")  # uvicorn's other lines still come out as ours, at LOG_LEVEL
    assert (error.handlers, error.propagate, error.level) == ([], True, logging.NOTSET)


def test_an_access_log_uvicorn_writes_is_routed_to_the_root_handler(logging_state):
    configured_like_uvicorn(access_log=True)
    access = logging.getLogger("uvicorn.access")
    assert (access.handlers, access.propagate, access.level) == ([], True, logging.NOTSET)
    stream = io.StringIO()
    logging.getLogger().handlers[0].setStream(stream)
    access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", "/api/ping", "1.1", 200)
    line = json.loads(stream.getvalue())
    assert (line["logger"], line["message"]) == ("uvicorn.access", '127.0.0.1:5000 - "GET /api/ping HTTP/1.1" 200')


def test_a_server_logger_with_a_handler_of_its_own_is_routed(logging_state):
    # gunicorn with --access-logfile: its access logger has its own handler and does not propagate
    access = logging.getLogger("gunicorn.access")
    access.handlers, access.propagate = [logging.StreamHandler(io.StringIO())], False
    configure_logging(level="info", fmt="json")
    assert (access.handlers, access.propagate) == ([], True)
