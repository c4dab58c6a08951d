"""The outbound host allowlist (pure logic) and the validation of its setting."""

import types

import pytest

from django_observe import conf
from django_observe.propagation import HostAllowlist


def load(**environ):
    return conf.load_config(types.SimpleNamespace(DEBUG=False), environ=environ)


def test_defaults_propagate_to_every_host():
    config = load()
    assert config.correlation_propagate is True
    assert config.correlation_propagate_hosts == ("*",)
    hosts = HostAllowlist(config.correlation_propagate_hosts)
    assert hosts.allows("anything.example") and hosts.allows_url("https://x.test:8443/p?q=1")


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("api.internal", True),
        ("API.Internal", True),
        ("api.internal.", True),
        ("api.internal.evil.com", False),
        ("evilapi.internal", False),
        ("10.0.0.7", True),
        ("10.0.0.70", False),
        ("::1", True),
        ("[::1]", True),
        ("a.example.com", True),
        ("a.b.example.com", True),
        ("example.com", False),
        ("badexample.com", False),
        ("example.com.evil.net", False),
        ("", False),
        (None, False),
    ],
)
def test_exact_hosts_and_suffix_patterns(host, allowed):
    hosts = HostAllowlist(("api.internal", "10.0.0.7", "::1", "*.example.com"))
    assert hosts.allows(host) is allowed
    assert hosts.allows(host) is allowed  # the cached answer is the same


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://api.internal/x", True),
        ("https://api.internal:8443/x?y=1", True),
        ("http://user:pw@api.internal/", True),
        ("http://[::1]:8000/", True),
        ("http://svc.example.com/", True),
        ("http://example.com/", False),
        ("http://api.internal.evil.com/", False),
        ("http://evil.com/?next=http://api.internal/", False),
        ("http://evil.com#@api.internal/", False),
        ("/relative/path", False),
        ("http://[bad/", False),
    ],
)
def test_allows_url_uses_the_host_only(url, allowed):
    assert HostAllowlist(("api.internal", "::1", "*.example.com")).allows_url(url) is allowed


def test_star_among_others_allows_all():
    assert HostAllowlist(("api.internal", "*")).allows("elsewhere.test")


def test_the_cache_is_bounded():
    hosts = HostAllowlist(("*.example.com",))
    for i in range(3000):
        hosts.allows(f"h{i}.other.test")
    assert len(hosts._cache) <= 1024


def test_hosts_from_the_environment_are_cleaned():
    config = load(CORRELATION_PROPAGATE_HOSTS=" API.internal , *.Example.com, [::1], 10.0.0.7, svc. ")
    assert config.correlation_propagate_hosts == ("api.internal", "*.example.com", "::1", "10.0.0.7", "svc")
    assert config.sources["correlation_propagate_hosts"] == "environment variable CORRELATION_PROPAGATE_HOSTS"


def test_settings_dict_and_switch():
    config = conf.load_config(
        types.SimpleNamespace(
            DEBUG=False,
            DJANGO_OBSERVE={"CORRELATION_PROPAGATE": False, "CORRELATION_PROPAGATE_HOSTS": ["a.internal"]},
        ),
        environ={},
    )
    assert config.correlation_propagate is False
    assert config.correlation_propagate_hosts == ("a.internal",)


@pytest.mark.parametrize(
    "value",
    [
        "http://api.internal",
        "api.internal:8080",
        "api.internal/path",
        "*example.com",
        "api.*.com",
        "*.10.0.0.7",
        "-bad.example",
        "spaced host",
        "",
        ",",
    ],
)
def test_bad_hosts_fail_naming_the_setting(value):
    with pytest.raises(conf.InvalidConfiguration) as excinfo:
        load(CORRELATION_PROPAGATE_HOSTS=value)
    message = str(excinfo.value)
    assert "environment variable CORRELATION_PROPAGATE_HOSTS must" in message
    assert repr(value) in message


def test_bad_hosts_in_the_settings_dict_name_the_key():
    with pytest.raises(conf.InvalidConfiguration) as excinfo:
        conf.load_config(
            types.SimpleNamespace(DEBUG=False, DJANGO_OBSERVE={"CORRELATION_PROPAGATE_HOSTS": ["https://x.test/"]}),
            environ={},
        )
    assert 'DJANGO_OBSERVE["CORRELATION_PROPAGATE_HOSTS"] must be a list of hosts' in str(excinfo.value)


def test_an_empty_allowlist_points_to_the_switch():
    with pytest.raises(conf.InvalidConfiguration, match="CORRELATION_PROPAGATE to false"):
        load(CORRELATION_PROPAGATE_HOSTS="")
