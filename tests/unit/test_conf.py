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
