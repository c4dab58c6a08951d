import types

import pytest

from django_observe import conf


def settings_obj(**values):
    values.setdefault("DEBUG", False)
    return types.SimpleNamespace(**values)


def test_defaults():
    config = conf.load_config(settings_obj(), environ={})
    assert config.log_level == "info"
    assert config.log_format == "json"
    assert config.otel_enabled is False
    assert config.health_timeout == 2.0
    assert config.health_cache_ttl == 1.0
    assert config.health_details == "always"
    assert config.sources["health_timeout"] == "default"


def test_log_format_defaults_to_text_when_debug():
    assert conf.load_config(settings_obj(DEBUG=True), environ={}).log_format == "text"


def test_top_level_settings_and_dict_keys_are_read():
    config = conf.load_config(
        settings_obj(LOG_LEVEL="WARN", OTEL_ENABLED=True, DJANGO_OBSERVE={"HEALTH_TIMEOUT": 5}), environ={}
    )
    assert config.log_level == "warning"
    assert config.otel_enabled is True
    assert config.health_timeout == 5.0
    assert config.sources["log_level"] == "settings.LOG_LEVEL"
    assert config.sources["health_timeout"] == 'DJANGO_OBSERVE["HEALTH_TIMEOUT"]'


def test_environment_overrides_settings():
    config = conf.load_config(
        settings_obj(LOG_LEVEL="INFO", DJANGO_OBSERVE={"HEALTH_DETAILS": "always"}),
        environ={
            "LOG_LEVEL": "debug",
            "HEALTH_DETAILS": "never",
            "OTEL_ENABLED": "true",
            "REDIS_URLS": "redis://a,redis://b",
        },
    )
    assert config.log_level == "debug"
    assert config.health_details == "never"
    assert config.otel_enabled is True
    assert config.redis_urls == ("redis://a", "redis://b")
    assert config.sources["log_level"] == "environment variable LOG_LEVEL"


@pytest.mark.parametrize(
    ("where", "value", "expected"),
    [
        ("LOG_LEVEL", "loud", '"error", "warning", "info", "debug", "trace", "warn"'),
        ("LOG_FORMAT", "xml", '"json", "text"'),
        ("OTEL_ENABLED", "maybe", "boolean"),
        ("HEALTH_TIMEOUT", "-1", "number from 0.05 to 300"),
        ("HEALTH_DETAILS", "sometimes", '"always", "authorized", "never"'),
        ("CELERY_MIN_WORKERS", "1.5", "integer"),
    ],
)
def test_invalid_values_name_the_setting_and_the_accepted_values(where, value, expected):
    with pytest.raises(conf.InvalidConfiguration) as info:
        conf.load_config(settings_obj(), environ={where: value})
    message = str(info.value)
    assert f"environment variable {where}" in message
    assert expected in message
    assert repr(value) in message


def test_every_error_is_reported_at_once():
    with pytest.raises(conf.InvalidConfiguration) as info:
        conf.load_config(settings_obj(LOG_FORMAT="xml", DJANGO_OBSERVE={"HEALTH_TIMEOUT": "soon"}), environ={})
    assert [e.setting for e in info.value.errors] == ["settings.LOG_FORMAT", 'DJANGO_OBSERVE["HEALTH_TIMEOUT"]']


def test_unknown_key_suggests_the_closest():
    with pytest.raises(conf.InvalidConfiguration) as info:
        conf.load_config(settings_obj(DJANGO_OBSERVE={"HEALTH_TIMOUT": 3}), environ={})
    assert 'DJANGO_OBSERVE["HEALTH_TIMOUT"] is not an option (did you mean "HEALTH_TIMEOUT"?)' in str(info.value)


def test_top_level_option_inside_the_dict_is_rejected():
    with pytest.raises(conf.InvalidConfiguration) as info:
        conf.load_config(settings_obj(DJANGO_OBSERVE={"LOG_LEVEL": "info"}), environ={})
    assert "is a top-level setting" in str(info.value)


def test_secret_values_are_not_echoed():
    with pytest.raises(conf.InvalidConfiguration) as info:
        conf.load_config(settings_obj(DJANGO_OBSERVE={"HEALTH_TOKEN": 12345678}), environ={})
    assert "12345678" not in str(info.value)
    assert "<hidden>" in str(info.value)


def test_dict_must_be_a_dict():
    with pytest.raises(conf.InvalidConfiguration, match="DJANGO_OBSERVE must be a dict, got list"):
        conf.load_config(settings_obj(DJANGO_OBSERVE=["x"]), environ={})


def test_json_options_from_the_environment():
    config = conf.load_config(
        settings_obj(),
        environ={"HEALTH_CHECK_OPTIONS": '{"celery": {"critical": true}}', "HEALTH_CHECKS": '["a.B"]'},
    )
    assert config.health_check_options == {"celery": {"critical": True}}
    assert config.health_checks == ("a.B",)
    with pytest.raises(conf.InvalidConfiguration, match="JSON object"):
        conf.load_config(settings_obj(), environ={"HEALTH_CHECK_OPTIONS": "{not json"})


def test_option_names_are_upper_case_field_names():
    names = conf.option_names()
    assert "HEALTH_TIMEOUT" in names and "LOG_LEVEL" in names
    assert len(names) == len(set(names))


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [
        ("METRICS_COLLECTOR_CACHE_SECONDS", "0", 0.0),
        ("METRICS_COLLECTOR_CACHE_SECONDS", "2.5", 2.5),
        ("METRICS_COLLECTOR_CACHE_SECONDS", "60", 60.0),
        ("METRICS_CONNECTION_TIMEOUT", "0.1", 0.1),
        ("METRICS_CONNECTION_TIMEOUT", "300", 300.0),
        ("METRICS_MAX_CONNECTIONS", "1", 1),
        ("METRICS_MAX_CONNECTIONS", "1024", 1024),
        ("SECRET_KEY_NAMES", "ssn, Card_Number", ("ssn", "card_number")),
        ("SECRET_KEY_NAMES", "", ()),
    ],
)
def test_new_options_accept_valid_values_from_the_environment(name, raw, expected):
    config = conf.load_config(settings_obj(), environ={name: raw})
    assert getattr(config, name.lower()) == expected
    assert config.sources[name.lower()] == f"environment variable {name}"


def test_new_options_defaults_and_dict_values():
    config = conf.load_config(settings_obj(), environ={})
    assert config.metrics_collector_cache_seconds == 1.0
    assert config.metrics_connection_timeout == 10.0
    assert config.metrics_max_connections == 16
    assert config.secret_key_names == ()
    config = conf.load_config(
        settings_obj(DJANGO_OBSERVE={"METRICS_MAX_CONNECTIONS": 4, "SECRET_KEY_NAMES": ["SSN", "iban"]}), environ={}
    )
    assert config.metrics_max_connections == 4
    assert config.secret_key_names == ("ssn", "iban")


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [
        ("METRICS_COLLECTOR_CACHE_SECONDS", "-1", "must be a number from 0 to 60"),
        ("METRICS_COLLECTOR_CACHE_SECONDS", "61", "must be a number from 0 to 60"),
        ("METRICS_COLLECTOR_CACHE_SECONDS", "soon", "must be a number from 0 to 60"),
        ("METRICS_CONNECTION_TIMEOUT", "0", "must be a number from 0.1 to 300"),
        ("METRICS_CONNECTION_TIMEOUT", "301", "must be a number from 0.1 to 300"),
        ("METRICS_MAX_CONNECTIONS", "0", "must be an integer from 1 to 1024"),
        ("METRICS_MAX_CONNECTIONS", "1025", "must be an integer from 1 to 1024"),
        ("METRICS_MAX_CONNECTIONS", "2.5", "must be an integer from 1 to 1024"),
        ("SECRET_KEY_NAMES", "ssn, card number", "must be a list of key names"),
    ],
)
def test_new_options_reject_invalid_values_naming_the_setting_and_the_accepted_values(name, raw, expected):
    with pytest.raises(conf.InvalidConfiguration) as info:
        conf.load_config(settings_obj(), environ={name: raw})
    message = str(info.value)
    assert f"environment variable {name} {expected}" in message
    assert repr(raw) in message


def test_secret_key_names_from_settings_must_be_a_list_of_strings():
    with pytest.raises(conf.InvalidConfiguration, match=r'DJANGO_OBSERVE\["SECRET_KEY_NAMES"\] must be a list of key'):
        conf.load_config(settings_obj(DJANGO_OBSERVE={"SECRET_KEY_NAMES": ["ssn", 3]}), environ={})


# Secrets never come back in error messages or in observe_config output.


@pytest.mark.parametrize(
    ("settings_values", "environ", "planted"),
    [
        ({}, {"OTEL_EXPORTER_OTLP_ENDPOINT": "ftp://user:planted-pw@collector:4318"}, "planted-pw"),
        ({"DJANGO_OBSERVE": {"OTEL_EXPORTER_OTLP_ENDPOINT": "grpc://:planted-pw@collector"}}, {}, "planted-pw"),
        (
            {"DJANGO_OBSERVE": {"HEALTH_CHECKS": [{"path": "a.B", "extra": 1, "options": {"password": "planted-pw"}}]}},
            {},
            "planted-pw",
        ),
        ({}, {"HEALTH_CHECKS": '[{"path": "a.B", "extra": 1, "options": {"token": "planted-tok"}}]'}, "planted-tok"),
        ({}, {"HEALTH_CHECK_OPTIONS": '{"db": {"password": "planted-pw"'}, "planted-pw"),
        ({}, {"HEALTH_CHECK_OPTIONS": "password=planted-pw"}, "planted-pw"),
        # bracketed form keys, as the log redaction knows them
        ({}, {"HEALTH_CHECK_OPTIONS": "db[password]=planted-pw"}, "planted-pw"),
        ({}, {"HEALTH_CHECK_OPTIONS": "db%5Bpassword%5D=planted-pw"}, "planted-pw"),
        ({}, {"HEALTH_CHECK_OPTIONS": '{"db": {"auth[token]": "planted-tok"'}, "planted-tok"),
        (
            {"DJANGO_OBSERVE": {"SECRET_KEY_NAMES": ["ssn"], "HEALTH_CHECKS": [{"path": "a.B", "ssn": "planted-ssn"}]}},
            {},
            "planted-ssn",
        ),
    ],
)
def test_error_messages_do_not_echo_secrets(settings_values, environ, planted):
    with pytest.raises(conf.InvalidConfiguration) as info:
        conf.load_config(settings_obj(**settings_values), environ=environ)
    message = str(info.value)
    assert planted not in message
    assert "[REDACTED]" in message
    assert all(planted not in e.message for e in info.value.errors)


def test_config_error_messages_are_redacted_whoever_builds_them():
    error = conf.ConfigError('DJANGO_OBSERVE["HEALTH_CHECKS"]', "cannot reach redis://:planted-pw@cache:6379")
    assert "planted-pw" not in str(error)


def observe_config_output(**options):
    import io

    from django.core.management import call_command

    from django_observe import runtime
    from django_observe.correlation import CorrelationPolicy

    config = conf.load_config(settings_obj(DJANGO_OBSERVE=options), environ={})
    # Only the configuration: the check paths in these options are not importable, so no runner is built.
    original = runtime.install(runtime.Runtime(config=config, role="command", correlation=CorrelationPolicy()))
    try:
        out = io.StringIO()
        call_command("observe_config", stdout=out)
    finally:
        runtime.install(original)
    return out.getvalue()


def test_observe_config_output_hides_url_passwords_and_secret_keys():
    output = observe_config_output(
        OTEL_EXPORTER_OTLP_ENDPOINT="https://user:planted-pw1@collector:4318",
        HEALTH_CHECKS=[
            {"path": "a.B", "options": {"password": "planted-pw2", "nested": {"api_key": "planted-key"}}},
            {"path": "a.C", "options": {"token": "planted-tok", "host": "db-visible"}},
        ],
        HEALTH_CHECK_OPTIONS={"db": {"dsn": "planted-dsn"}},
        METRICS_TOKEN="planted-metrics-token",
    )
    for planted in ("planted-pw1", "planted-pw2", "planted-key", "planted-tok", "planted-dsn", "planted-metrics-token"):
        assert planted not in output
    assert "OTEL_EXPORTER_OTLP_ENDPOINT = 'https://user:[REDACTED]@collector:4318'" in output
    assert "db-visible" in output  # only secret keys are hidden


def test_observe_config_output_hides_values_under_secret_key_names():
    output = observe_config_output(
        SECRET_KEY_NAMES=["ssn"], HEALTH_CHECKS=[{"path": "a.C", "options": {"SSN": "planted-ssn", "host": "db"}}]
    )
    assert "planted-ssn" not in output
    assert "'host': 'db'" in output
