"""otlp_exporter: one factory for the three signals' OTLP exporters (the tracer provider, the OTLP log handler,
the metrics pusher and observe_doctor use it); the e2e tests send through each to a real receiver."""

import pytest
import requests

from django_observe.otlp_exporters import otlp_exporter

CLASSES = {"traces": "OTLPSpanExporter", "logs": "OTLPLogExporter", "metrics": "OTLPMetricExporter"}


@pytest.mark.parametrize("signal", sorted(CLASSES))
@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_each_signal_gets_its_exporter_for_the_protocol(signal, protocol):
    exporter = otlp_exporter(signal, "http://127.0.0.1:9", protocol, timeout=1)
    try:
        assert type(exporter).__name__ == CLASSES[signal]
        kind = "grpc" if protocol == "grpc" else "http"
        assert type(exporter).__module__.startswith(f"opentelemetry.exporter.otlp.proto.{kind}."), type(exporter)
    finally:
        exporter.shutdown()


@pytest.mark.parametrize("signal", sorted(CLASSES))
def test_the_http_exporter_posts_to_the_signal_path_of_the_base_url_through_the_given_session(signal):
    from opentelemetry.sdk.metrics.export import MetricsData

    posted = []

    class Recording(requests.Session):
        def request(self, method, url, *args, **kwargs):
            posted.append((method, url))
            raise requests.exceptions.ConnectionError("not sent")

    exporter = otlp_exporter(signal, "http://collector.invalid:4318/", "http/protobuf", timeout=1, session=Recording())
    try:
        exporter.export(MetricsData([]) if signal == "metrics" else [])
    finally:
        exporter.shutdown()
    assert posted and set(posted) == {("POST", f"http://collector.invalid:4318/v1/{signal}")}
