"""The Redis collector against a real Redis: a scrape flood sends one INFO per interval (Redis's own count)."""

import time

import pytest
import redis

from django_observe.metrics.collectors.base import Deadline, ScrapeErrors
from django_observe.metrics.collectors.redis import RedisCollector
from tests import support

pytestmark = pytest.mark.integration


def info_calls(client):
    # This INFO counts itself only after it answers, so each reading adds one to the next.
    return client.info("commandstats").get("cmdstat_info", {}).get("calls", 0)


def test_fifty_scrapes_send_one_info_per_interval():
    with support.throwaway_redis() as server:  # a private server: nobody else's INFO calls
        client = redis.Redis.from_url(server.url)
        collector = RedisCollector("", ScrapeErrors(), Deadline(2), [server.url], cache_seconds=1.0)
        before = info_calls(client)
        started = time.monotonic()
        for _ in range(50):
            list(collector.collect())
        assert time.monotonic() - started < 1.0, "the loop outlived the interval: the count below means nothing"
        assert info_calls(client) - before == 1 + 1  # the collector's INFO, plus the reading above
        time.sleep(1.1)
        before = info_calls(client)
        for _ in range(50):
            list(collector.collect())
        assert info_calls(client) - before == 1 + 1
