from pathlib import Path

from django_observe import conf

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_configuration_reference_matches_the_code():
    text = (DOCS / "configuration.md").read_text()
    assert conf.reference_markdown() in text, (
        "docs/configuration.md is out of date: regenerate the table with `python manage.py observe_config --reference`"
    )
    documented = {line.split("`")[1] for line in text.splitlines() if line.startswith("| `")}
    assert documented == set(conf.option_names())


def test_computed_defaults_are_described_by_their_own_option():
    rows = {line.split("`")[1]: line for line in conf.reference_markdown().splitlines() if line.startswith("| `")}
    for field in conf.option_fields():
        default_from = field.metadata["default_from"]
        if default_from is not None:
            assert field.metadata["default_doc"] in rows[field.name.upper()]
            assert field.metadata["default_doc"] == default_from.__doc__.strip()
    assert "| computed |" not in conf.reference_markdown()
    assert "MEDIA_ROOT" in rows["METRICS_DISK_PATHS"].split(" | ")[2]


def test_a_computed_default_without_a_description_is_refused():
    import pytest

    def undocumented(settings):
        return "x"

    with pytest.raises(TypeError, match="undocumented"):
        conf.option("x", str, "Doc.", default_from=undocumented)
    field = conf.option("x", str, "Doc.", default_from=undocumented, default_doc="`x` always")
    assert field.metadata["default_doc"] == "`x` always"
