"""The supported versions are stated once per audience and agree: pyproject classifiers, the CI matrix, the docs."""

import runpy
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MATRIX = runpy.run_path(str(ROOT / ".ci" / "matrix"), run_name="ci_matrix")
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
FULL_SUITE = ("3.11", "5.2")  # the README's test command


def version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def classified(prefix: str) -> set[str]:
    return {c.removeprefix(prefix) for c in PROJECT["classifiers"] if c.startswith(prefix) and c != prefix.strip(": ")}


def test_the_matrix_and_the_full_suite_cover_every_classified_combination():
    tested = {FULL_SUITE, *MATRIX["COMBINATIONS"]}
    assert {django for _, django in tested} == classified("Framework :: Django :: ")
    pythons = classified("Programming Language :: Python :: ") - {"3"}
    assert {python for python, _ in tested} == pythons
    # Django 6 needs Python 3.12+: every valid pair is tested, and no invalid one is.
    djangos = classified("Framework :: Django :: ")
    valid = {(p, d) for p in pythons for d in djangos if version(d) < (6,) or version(p) >= (3, 12)}
    assert tested == valid


def test_the_matrix_pins_each_django_to_its_feature_release():
    for release, requirement in MATRIX["DJANGO"].items():
        assert requirement == f"Django~={release}.0"


def test_the_django_requirement_keeps_the_oldest_supported_release():
    oldest = min(classified("Framework :: Django :: "), key=version)
    assert f"Django>={oldest}" in PROJECT["dependencies"]


def test_the_readme_table_lists_every_combination():
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Supported versions") :].split("\n\n")[1]
    rows = {}
    for line in table.splitlines()[2:]:
        django, pythons = (cell.strip() for cell in line.strip("|").split("|"))
        rows[django.split()[0]] = {p.strip() for p in pythons.split(",")}
    listed = {(p, d) for d, ps in rows.items() for p in ps}
    assert listed == {FULL_SUITE, *MATRIX["COMBINATIONS"]}


def test_the_core_integration_tests_exist():
    for node in MATRIX["CORE_INTEGRATION"]:
        path, _, name = node.partition("::")
        source = (ROOT / path).read_text()
        assert not name or f"def {name}(" in source, node
