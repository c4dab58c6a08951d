"""distribution_version: the version of the distribution that provides an import package, as
importlib.metadata.packages_distributions() would find it, without parsing every installed file list."""

import sys
from importlib import metadata

import pytest

from django_observe import identity


def _dist(site, name, version, *, top_level=None, record=()):
    folder = site / f"{name.replace('-', '_')}-{version}.dist-info"
    folder.mkdir()
    (folder / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\nBody: x\n")
    if top_level is not None:
        (folder / "top_level.txt").write_text(top_level)
    (folder / "RECORD").write_text("".join(f"{path},sha256=abc,1\n" for path in record))


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", [str(tmp_path / "missing"), str(tmp_path)])
    identity.distribution_version.cache_clear()
    yield tmp_path
    identity.distribution_version.cache_clear()


def test_the_same_answer_as_packages_distributions(site):
    _dist(site, "acme-web", "1.2.3", top_level="acme\n")
    _dist(site, "hatched", "2.0", record=["hatched/__init__.py", "hatched/x.py", "hatched-2.0.dist-info/RECORD"])
    _dist(site, "single", "0.5", record=["single_mod.py", "single-0.5.dist-info/RECORD"])
    _dist(site, "empty-top", "3.1", top_level="\n", record=["inferred/__init__.py"])
    _dist(site, "mentions", "9.9", record=["other/acmeish.py", "docs/hatched.txt"])
    found = metadata.packages_distributions()
    for package in ("acme", "hatched", "single_mod", "inferred", "other", "acmeish", "nothing"):
        # Every package the standard library finds gets its answer. (Python 3.12+ finds no package for a
        # dist-info that has a RECORD but no top_level.txt, as hatchling writes them; 3.11 and we infer it.)
        if package in found:
            assert identity.distribution_version(package) == metadata.version(found[package][0]), package
    assert identity.distribution_version("acme") == "1.2.3"
    assert identity.distribution_version("hatched") == "2.0"
    assert identity.distribution_version("single_mod") == "0.5"
    assert identity.distribution_version("nothing") is None


def test_a_broken_dist_info_is_passed_over(site):
    (site / "broken-1.0.dist-info").mkdir()
    (site / "broken-1.0.dist-info" / "top_level.txt").write_bytes(b"\xff\xfe")
    _dist(site, "good", "1.0", top_level="good\n")
    assert identity.distribution_version("good") == "1.0"


def test_a_large_record_is_searched_past_its_first_chunk(site):
    # RECORDs are searched in 64 KB chunks before any line is parsed: a package listed only after the first
    # chunk, or whose name straddles two chunks, is still found; a RECORD that never names it is not parsed.
    filler = [f"bulk/file_{i:06d}.py" for i in range(3000)]  # about 100 KB of other paths
    _dist(site, "late", "4.2", record=[*filler, "latepkg/__init__.py"])
    assert identity.distribution_version("latepkg") == "4.2"
    assert identity.distribution_version("bulk") == "4.2"
    assert identity.distribution_version("nothing_here") is None


@pytest.mark.parametrize("offset", [0, 1, 3, 5, 6])
def test_a_name_across_two_chunks_is_found(offset):
    import io

    data = b"x" * (8 - offset) + b"needle" + b"y" * 20
    assert identity._mentions(io.BytesIO(data), b"needle", chunk_size=8)
    assert not identity._mentions(io.BytesIO(data), b"needles", chunk_size=8)
    assert identity._mentions(io.BytesIO(b"abc"), b"c", chunk_size=1)
