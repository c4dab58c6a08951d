"""The metrics port's pure logic: the exposure check (W002), the multiprocess directory's safety, access rules."""

from __future__ import annotations

import dataclasses
import logging
import os
import socket

import pytest
from django.core import checks
from django.test import override_settings

from django_observe import runtime
from django_observe.checks import check_metrics_exposure, metrics_exposure_warnings
from django_observe.metrics import exporter
from tests import support


@pytest.fixture
def config():
    """Installs a runtime with a variant of the current configuration: ``config(METRICS_ADDRESS=..., ...)``."""
    original = runtime.get_runtime()

    def make(**options):
        changed = dataclasses.replace(original.config, **{key.lower(): value for key, value in options.items()})
        runtime.install(dataclasses.replace(original, config=changed))
        return changed

    yield make
    runtime.install(original)


def w002() -> list[str]:
    return [message.id for message in check_metrics_exposure() if message.id == "django_observe.W002"]


@pytest.mark.parametrize("address", ["127.0.0.1", "127.1.2.3", "::1", "localhost", "LOCALHOST", "::ffff:127.0.0.1"])
def test_loopback_address_is_not_reported(config, address):
    config(METRICS_ADDRESS=address, METRICS_PORT=8001, METRICS_TOKEN=None, METRICS_ALLOWED_IPS=())
    assert w002() == []


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "", "10.1.2.3", "metrics.internal"])
def test_open_port_without_token_or_allowlist_is_reported(config, address):
    config(METRICS_ADDRESS=address, METRICS_PORT=8001, METRICS_TOKEN=None, METRICS_ALLOWED_IPS=())
    assert w002() == ["django_observe.W002"]
    (message,) = check_metrics_exposure()
    assert isinstance(message, checks.Warning)
    assert "METRICS_TOKEN" in message.msg and "METRICS_ALLOWED_IPS" in message.msg
    assert "SILENCED_SYSTEM_CHECKS" in message.hint


def test_token_or_allowlist_protects_an_open_port(config):
    config(METRICS_ADDRESS="0.0.0.0", METRICS_PORT=8001, METRICS_TOKEN="s3cret", METRICS_ALLOWED_IPS=())
    assert w002() == []
    config(METRICS_ADDRESS="0.0.0.0", METRICS_PORT=8001, METRICS_TOKEN=None, METRICS_ALLOWED_IPS=("10.0.0.0/8",))
    assert w002() == []


def test_worker_port_alone_counts(config):
    config(METRICS_ADDRESS="0.0.0.0", METRICS_PORT=0, METRICS_WORKER_PORT=8002, METRICS_TOKEN=None)
    assert w002() == ["django_observe.W002"]


def test_no_port_or_metrics_disabled_is_not_reported(config):
    config(METRICS_ADDRESS="0.0.0.0", METRICS_PORT=0, METRICS_WORKER_PORT=0, METRICS_TOKEN=None)
    assert w002() == []
    config(METRICS_ENABLED=False, METRICS_ADDRESS="0.0.0.0", METRICS_PORT=8001, METRICS_TOKEN=None)
    assert w002() == []


def test_warning_is_registered_and_silenceable(config):
    config(METRICS_ADDRESS="0.0.0.0", METRICS_PORT=8001, METRICS_TOKEN=None, METRICS_ALLOWED_IPS=())
    ids = [m.id for m in checks.run_checks(tags=[checks.Tags.security])]
    assert "django_observe.W002" in ids
    with override_settings(SILENCED_SYSTEM_CHECKS=["django_observe.W002"]):
        messages = checks.run_checks(tags=[checks.Tags.security])
        assert "django_observe.W002" not in [m.id for m in messages if not m.is_silenced()]


def test_warnings_function_is_pure():
    base = runtime.get_config()
    open_port = dataclasses.replace(
        base, metrics_address="0.0.0.0", metrics_port=9100, metrics_worker_port=0, metrics_token=None
    )
    assert "port 9100)" in metrics_exposure_warnings(dataclasses.replace(open_port, metrics_allowed_ips=()))[0].msg
    both = dataclasses.replace(open_port, metrics_worker_port=9101, metrics_allowed_ips=())
    assert "ports 9100 and 9101" in metrics_exposure_warnings(both)[0].msg
    assert runtime.get_config() is base  # nothing installed


# --- the multiprocess directory


@pytest.fixture
def temp_base(tmp_path, monkeypatch):
    """The default base directory lands under ``tmp_path`` (no XDG runtime dir)."""
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(exporter.tempfile, "tempdir", str(tmp_path))
    return tmp_path / f"django_observe_metrics-{os.geteuid()}"


def test_default_directory_is_per_user_and_private(temp_base):
    path = exporter.multiprocess_dir(None, "worker")
    assert os.path.dirname(path) == str(temp_base)
    assert os.path.basename(path) == str(os.getpid())
    assert os.stat(temp_base).st_mode & 0o777 == 0o700
    assert os.stat(path).st_mode & 0o077 == 0
    assert exporter.multiprocess_dir(None, "worker") == path  # stable: siblings find the same one


def test_world_writable_base_is_refused(temp_base, caplog):
    temp_base.mkdir()
    os.chmod(temp_base, 0o777)
    with caplog.at_level(logging.ERROR, "django_observe.metrics"):
        path = exporter.multiprocess_dir(None, "worker")
    assert not path.startswith(str(temp_base) + os.sep)
    assert os.path.basename(path) == str(os.getpid())  # a fresh private directory, same layout
    assert os.stat(os.path.dirname(path)).st_mode & 0o077 == 0
    assert "writable by its group or by others" in caplog.text and str(temp_base) in caplog.text
    assert os.listdir(temp_base) == []  # nothing written into the refused directory


def test_base_of_another_owner_is_refused(temp_base, caplog):
    temp_base.mkdir(mode=0o700)
    other = 65534 if os.geteuid() != 65534 else 65533
    support.require_root()
    os.chown(temp_base, other, -1)
    with caplog.at_level(logging.ERROR, "django_observe.metrics"):
        path = exporter.multiprocess_dir(None, "worker")
    assert not path.startswith(str(temp_base) + os.sep)
    assert f"owned by uid {other}" in caplog.text


def test_symlinked_base_is_refused(temp_base, tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    temp_base.symlink_to(target)
    assert exporter.unsafe_directory(str(temp_base)) == "is a symbolic link"
    assert not exporter.multiprocess_dir(None, "worker").startswith(str(temp_base) + os.sep)


def test_refused_base_in_a_worker_falls_back_to_single_process(temp_base, monkeypatch, caplog):
    temp_base.mkdir()
    os.chmod(temp_base, 0o777)
    monkeypatch.setattr(exporter, "group_pid", lambda role: os.getpid() + 1)  # a gunicorn worker: master elsewhere
    with caplog.at_level(logging.ERROR, "django_observe.metrics"):
        assert exporter.multiprocess_dir(None, "web") is None
    assert "single-process" in caplog.text
    assert exporter.enable_multiprocess(None) is False


def test_xdg_runtime_dir_is_used_when_private(tmp_path, monkeypatch):
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    assert exporter.default_base() == str(runtime / "django_observe_metrics")
    os.chmod(runtime, 0o777)
    assert exporter.default_base() != str(runtime / "django_observe_metrics")


def test_project_directory_is_used_as_given(tmp_path):
    path = exporter.multiprocess_dir(str(tmp_path / "metrics"), "worker")
    assert path == str(tmp_path / "metrics" / str(os.getpid()))


# --- access rules and binding


def test_an_inherited_directory_outside_the_projects_setting_is_ignored(tmp_path, monkeypatch):
    # A parent's group directory under the project's own base is this group's (gunicorn's workers, Celery's
    # children); one elsewhere was left by an unrelated parent and must not take the project's metrics.
    base = tmp_path / "metrics"
    monkeypatch.setenv(exporter.ENV, str(base / "4242"))
    assert exporter.inherited_dir(str(base)) == str(base / "4242")
    monkeypatch.setenv(exporter.ENV, str(tmp_path / "other" / "4242"))
    assert exporter.inherited_dir(str(base)) is None
    monkeypatch.setenv(exporter.ENV, str(tmp_path / "metrics-old" / "4242"))  # a sibling sharing the prefix
    assert exporter.inherited_dir(str(base)) is None
    assert exporter.inherited_dir(None) == str(tmp_path / "metrics-old" / "4242")  # no setting: as inherited
    monkeypatch.delenv(exporter.ENV)
    assert exporter.inherited_dir(str(base)) is None


def test_ipv4_allowlist_matches_ipv4_clients_of_a_dual_stack_socket():
    access = exporter.Access.build(None, ["10.0.0.0/8", "fd00::/8"])
    assert access.refusal("10.1.2.3", "") is None
    assert access.refusal("::ffff:10.1.2.3", "") is None
    assert access.refusal("fd00::5", "") is None
    assert access.refusal("::ffff:192.168.1.1", "") == 403
    assert access.refusal("not an address", "") == 403


def test_token_is_checked_after_the_address():
    access = exporter.Access.build("s3cret", ["127.0.0.0/8"])
    assert access.refusal("10.0.0.1", "Bearer s3cret") == 403
    assert access.refusal("127.0.0.1", "Bearer wrong") == 401
    assert access.refusal("127.0.0.1", "") == 401
    assert access.refusal("127.0.0.1", "Bearer s3cret") is None
    assert exporter.Access().refusal("203.0.113.9", "") is None


@pytest.mark.parametrize(
    ("address", "family", "host"),
    [
        ("0.0.0.0", socket.AF_INET, "0.0.0.0"),
        ("", socket.AF_INET, "0.0.0.0"),
        ("127.0.0.1", socket.AF_INET, "127.0.0.1"),
        ("::", socket.AF_INET6, "::"),
        ("::1", socket.AF_INET6, "::1"),
    ],
)
def test_bind_family_follows_the_address(address, family, host):
    assert exporter.bind_family(address, 8001) == (family, host)


def test_server_rejects_nonsense_bounds():
    with pytest.raises(ValueError, match="connection_timeout"):
        exporter.MetricsServer("127.0.0.1", 0, None, connection_timeout=0)
    with pytest.raises(ValueError, match="max_connections"):
        exporter.MetricsServer("127.0.0.1", 0, None, max_connections=0)
