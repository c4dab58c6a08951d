"""Every catalogue family is announced from the first scrape in multiprocess mode (families.announce)."""

import re

from prometheus_client import values
from prometheus_client.metrics_core import Metric

from django_observe.metrics import exporter
from django_observe.metrics.catalogue import build_catalogue
from django_observe.metrics.families import DeclaredFamilies, announce

OPENMETRICS = "application/openmetrics-text; version=1.0.0"
DECLARED = [
    ("requests", "Requests.", "histogram", ""),
    ("health", "Health.", "gauge", ""),
    ("errors", "Errors.", "counter", ""),
]


def family(name, typ, *samples):
    metric = Metric(name, f"{name} from the files", typ)
    for sample_name, value in samples:
        metric.add_sample(sample_name, {}, value)
    return metric


def test_announce_adds_the_declared_families_without_samples_after_those_found():
    found = [family("errors", "counter", ("errors_total", 3.0)), family("other", "gauge", ("other", 1.0))]
    merged = list(announce(found, DECLARED))
    assert [(m.name, m.type) for m in merged] == [
        ("errors", "counter"),
        ("other", "gauge"),
        ("requests", "histogram"),
        ("health", "gauge"),
    ]
    assert merged[0] is found[0] and merged[0].samples[0].value == 3.0  # found families pass through untouched
    assert merged[2].samples == [] and merged[2].documentation == "Requests."


def test_announce_with_nothing_found_and_nothing_declared_twice():
    merged = list(announce([], [*DECLARED, DECLARED[0]]))
    assert [m.name for m in merged] == ["requests", "health", "errors"]


def test_declared_families_read_the_metrics_descriptions():
    catalogue = build_catalogue(registry=None)
    declared = {name: typ for name, _, typ, _ in DeclaredFamilies(catalogue.metrics()).declared}
    assert declared["http_server_request_duration_seconds"] == "histogram"
    assert declared["http_server_exceptions"] == "counter"
    assert declared["health_check_status"] == declared["health_check_duration_seconds"] == "gauge"
    assert list(DeclaredFamilies(catalogue.metrics()).collect()) == []


def test_multiprocess_scrape_announces_every_catalogue_family_once(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.setattr(values, "ValueClass", values.get_value_class())
    catalogue = build_catalogue(registry=None)
    catalogue.exceptions.labels("api/ping", "ValueError").inc()  # one family has a sample in a file
    body, _ = exporter.render(str(tmp_path), [DeclaredFamilies(catalogue.metrics())], "")
    text = body.decode()
    for metric in catalogue.metrics():
        (described,) = metric.describe()
        name = described.name + ("_total" if described.type == "counter" else "")
        assert text.count(f"# HELP {name} ") == 1, name
        assert text.count(f"# TYPE {name} {described.type}\n") == 1, name
    assert 'http_server_exceptions_total{exception_type="ValueError",route="api/ping"} 1.0' in text
    assert "http_server_active_requests 0.0" in text  # a label-less series has its zero sample
    assert not re.search(r"^(http_server_request_duration_seconds|health_check_\w+)[_{ ]", text, re.M)
    openmetrics, _ = exporter.render(str(tmp_path), [DeclaredFamilies(catalogue.metrics())], OPENMETRICS)
    assert b"# TYPE http_server_request_duration_seconds histogram\n" in openmetrics
    assert b"# TYPE health_check_status gauge\n" in openmetrics and openmetrics.endswith(b"# EOF\n")


def test_without_declared_families_labelled_families_are_missing(tmp_path, monkeypatch):
    # What prometheus_client's MultiProcessCollector alone gives: the reason for DeclaredFamilies.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.setattr(values, "ValueClass", values.get_value_class())
    build_catalogue(registry=None)
    body, _ = exporter.render(str(tmp_path), [], "")
    assert b"# TYPE http_server_request_duration_seconds histogram" not in body
