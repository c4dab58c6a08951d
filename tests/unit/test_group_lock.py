"""Election within a process group by lock file: one function, used by the metrics port and the OTLP push."""

from __future__ import annotations

from django_observe.identity import ServiceIdentity
from django_observe.metrics import exporter
from django_observe.metrics.otlp import LOCK_NAME, MetricsPusher


def test_one_holder_at_a_time_and_a_sibling_takes_over(tmp_path):
    path = str(tmp_path / "group.lock")
    first = exporter.take_group_lock(path, None)
    assert first is not None
    assert exporter.take_group_lock(path, first) is first  # still elected
    assert exporter.take_group_lock(path, None) is None  # a sibling (another open file) is refused
    first.close()  # the holder dies
    second = exporter.take_group_lock(path, None)
    assert second is not None
    second.close()


def test_a_refused_try_leaves_no_file_open(tmp_path, monkeypatch):
    path = str(tmp_path / "group.lock")
    holder = exporter.take_group_lock(path, None)
    opened = []

    def recording_open(*args, **kwargs):
        opened.append(open(*args, **kwargs))  # noqa: SIM115
        return opened[-1]

    monkeypatch.setattr(exporter, "open", recording_open, raising=False)
    for _ in range(3):
        assert exporter.take_group_lock(path, None) is None
    assert len(opened) == 3 and all(f.closed for f in opened)
    holder.close()


def _pusher(path: str) -> MetricsPusher:
    return MetricsPusher(path, list, ServiceIdentity(name="svc"), exporter=None, interval=60)


def test_metrics_port_and_otlp_push_elect_through_it(tmp_path):
    port_a = exporter.Exporter("127.0.0.1", 0, app=None, lock_dir=str(tmp_path))
    port_b = exporter.Exporter("127.0.0.1", 0, app=None, lock_dir=str(tmp_path))
    assert port_a._elected() and not port_b._elected()
    assert port_a._elected()  # stays elected

    push_a, push_b = _pusher(str(tmp_path)), _pusher(str(tmp_path))
    assert push_a.lock_path == str(tmp_path / LOCK_NAME)
    assert push_a.elected() and not push_b.elected()  # its own lock file, independent of the port's
    push_a._lock_file.close()
    push_a._lock_file = None
    assert push_b.elected() and not push_a.elected()
    for held in (port_a._lock_file, push_b._lock_file):
        held.close()


def test_single_process_is_always_elected():
    assert exporter.Exporter("127.0.0.1", 0, app=None, lock_dir=None)._elected()
    assert _pusher(None).elected()  # type: ignore[arg-type]
