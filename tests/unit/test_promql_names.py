import pytest

from tests import promql


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            'sum by (route) (rate(http_server_request_duration_seconds_count{status_code=~"5.."}[5m]))',
            {"http_server_request_duration_seconds_count"},
        ),
        ("histogram_quantile(0.95, sum by (le, job) (rate(a_bucket[5m]))) > 3", {"a_bucket"}),
        ("max by (job) (celery_workers) < 1 or absent(celery_workers)", {"celery_workers"}),
        ("celery_queue_length > 100 and deriv(celery_queue_length[10m]) > 0", {"celery_queue_length"}),
        ("job:http_server_errors:ratio_rate5m > 0.05", {"job:http_server_errors:ratio_rate5m"}),
        ('min by (check) (health_check_status{check=~"redis(:.*)?"}) == 0', {"health_check_status"}),
        ("rate(x_sum[5m]) / rate(y_count[5m]) * 100", {"x_sum", "y_count"}),
    ],
)
def test_metric_names(expr, names):
    assert promql.metric_names(expr) == names


def test_base_name():
    assert promql.base_name("http_server_request_duration_seconds_bucket") == "http_server_request_duration_seconds"
    assert promql.base_name("celery_workers") == "celery_workers"


def test_every_shipped_query_reads_some_metric():
    expressions = promql.shipped_expressions()
    assert len(expressions) > 20
    for where, expr in expressions.items():
        assert promql.metric_names(expr), where
