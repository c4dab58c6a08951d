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
