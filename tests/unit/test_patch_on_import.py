"""The one patch-on-import finder (``_patching.after_import``: HTTP clients, console, LLM SDKs) beside wrapt's
post-import hooks (the tracing instrumentors' way) on the same module: both run once, and the import does not
recurse (it did: the finder set ``exec_module`` on wrapt's loader proxy, which forwarded it to the loader the
proxy wraps, which then called itself)."""

import sys

from django_observe.integrations import _patching
from django_observe.integrations._patching import RunAfterExec
from tests import support


def test_a_module_hooked_by_wrapt_and_by_our_finder_imports_once_with_both_hooks(tmp_path, monkeypatch):
    wrapt_importer = support.require_module("wrapt.importer")  # part of the otel extra
    (tmp_path / "hooked_twice_lib.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    ran = []
    finder = _patching._AfterImport()
    finder.pending["hooked_twice_lib"] = [("test", lambda: ran.append("ours"))]
    wrapt_importer.register_post_import_hook(lambda module: ran.append("wrapt"), "hooked_twice_lib")
    monkeypatch.setattr(sys, "meta_path", [finder, *sys.meta_path])
    try:
        import hooked_twice_lib
    finally:
        sys.modules.pop("hooked_twice_lib", None)
    assert hooked_twice_lib.VALUE == 1
    assert sorted(ran) == ["ours", "wrapt"]
    assert "hooked_twice_lib" not in finder.pending
    assert not isinstance(hooked_twice_lib.__loader__, RunAfterExec)


def test_every_owner_patches_after_one_import_and_an_uninstall_forgets_only_its_own(tmp_path, monkeypatch):
    """HTTP clients' propagation and the console both wait for the same client library: one import runs both
    patches once; an owner that uninstalls before the import drops only its own."""
    for name in ("after_import_lib_a", "after_import_lib_b"):
        (tmp_path / f"{name}.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    ran = []
    _patching.after_import("after_import_lib_a", lambda: ran.append("propagation"), owner="test-propagation")
    _patching.after_import("after_import_lib_a", lambda: ran.append("console"), owner="test-console")
    _patching.after_import("after_import_lib_b", lambda: ran.append("console b"), owner="test-console")
    _patching.after_import("after_import_lib_b", lambda: ran.append("propagation b"), owner="test-propagation")
    assert _patching.waits_for_import("test-console")
    _patching.forget_after_import("test-console")
    assert not _patching.waits_for_import("test-console") and _patching.waits_for_import("test-propagation")
    try:
        import after_import_lib_a  # noqa: F401
        import after_import_lib_b  # noqa: F401
    finally:
        for name in ("after_import_lib_a", "after_import_lib_b"):
            sys.modules.pop(name, None)
    assert ran == ["propagation", "propagation b"]
    assert not _patching.waits_for_import("test-propagation")
    _patching.after_import("sys", lambda: ran.append("already imported"), owner="x")
    assert ran[-1] == "already imported" and not _patching.waits_for_import("x")
