"""Every cache on the request path is bounded: a stream of distinct keys (paths, hosts, field names, methods)
leaves it at its bound, so a long-running worker's memory does not grow with traffic (#30; the long runs in
``benchmarks/footprint.py --growth`` measure the process)."""

from django.test import RequestFactory
from prometheus_client import CollectorRegistry

from django_observe.integrations import http_clients
from django_observe.metrics import http
from django_observe.metrics.catalogue import build_catalogue
from django_observe.redaction import Redactor

DISTINCT = 10_000


def test_the_secret_key_verdicts_kept_are_bounded():
    redactor = Redactor()
    for i in range(DISTINCT):
        assert redactor.is_secret_key(f"field_{i}") is False
    assert redactor.is_secret_key("password") is True
    assert 0 < len(redactor.known_keys) <= 4096


def test_the_allowed_hosts_kept_are_bounded():
    allowlist = http_clients.HostAllowlist(["*.internal"])
    for i in range(DISTINCT):
        allowlist.allows(f"host-{i}.example.com")
    assert allowlist.allows("api.internal") is True
    assert 0 < len(allowlist._cache) <= http_clients._CACHE_SIZE


def test_request_metrics_keep_nothing_per_path_or_method():
    registry = CollectorRegistry()
    catalogue = build_catalogue(registry=registry)
    recorder = http.RequestRecorder(catalogue, frozenset({"django_observe"}))
    factory = RequestFactory()
    for i in range(DISTINCT):
        request = factory.generic(f"M{i % 500}", f"/no/such/path/{i}")  # unresolved, unknown methods
        request.resolver_match = None
        recorder.begin()
        recorder.end(request, 404 if i % 2 else 400 + i % 100, 0.01)
    caches = (recorder._resolved, recorder._children, recorder._exception_children, recorder._query_children)
    assert sum(len(cache) for cache in caches) <= 2 * 100 + 8
    series = {
        tuple(sorted(s.labels.items()))
        for metric in registry.collect()
        for s in metric.samples
        if s.name.endswith("duration_seconds_count")
    }
    assert 0 < len(series) <= 100
