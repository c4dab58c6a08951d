"""The Redis collector against a real Redis: a scrape flood sends one INFO per interval (Redis's own count)."""

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
        now = [1000.0]
        collector.cache.clock = lambda: now[0]  # the interval's clock, moved by the test (not by the machine's load)
        before = info_calls(client)
        for _ in range(50):
            list(collector.collect())
            now[0] += 0.019  # 50 scrapes within the interval: 0.95 s
        assert info_calls(client) - before == 1 + 1  # the collector's INFO, plus the reading above
        now[0] += 0.1  # past the interval
        before = info_calls(client)
        for _ in range(50):
            list(collector.collect())
        assert info_calls(client) - before == 1 + 1
