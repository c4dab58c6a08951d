"""Replacing another library's attributes, and putting them back: the one way integrations patch.

A private helper of ``django_observe.integrations`` (not a row of the table).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["Patches", "Receivers", "RunAfterExec", "after_import", "forget_after_import", "waits_for_import"]

_MISSING = object()


class Patches:
    """The attributes one integration replaced: ``(owner, name) -> (original, wrapper)``.

    :meth:`wrap` replaces an attribute once (a second call is a no-op), :meth:`restore` puts back every
    attribute still holding our wrapper. One that someone else wrapped again after us (an OpenTelemetry
    instrumentor) is left in place, so their wrapper keeps working; ours then keeps passing calls through.
    """

    __slots__ = ("_done", "_lock")

    def __init__(self) -> None:
        self._done: dict[tuple[Any, str], tuple[Any, Any]] = {}
        self._lock = threading.Lock()

    def wrap(self, owner: Any, name: str, make: Callable[[Any], Any]) -> Any:
        """Replace ``owner.name`` with ``make(original)`` unless done already; returns the wrapper.

        The original is read from the owner's own ``__dict__`` when it is there (a class attribute as
        defined, not bound), else inherited (then :meth:`restore` deletes ours and the inherited one shows
        again).
        """
        with self._lock:
            done = self._done.get((owner, name))
            if done is not None:
                return done[1]
            own = vars(owner).get(name, _MISSING)
            wrapper = make(getattr(owner, name) if own is _MISSING else own)
            self._done[(owner, name)] = (own, wrapper)
            setattr(owner, name, wrapper)
            return wrapper

    def is_patched(self, owner: Any, name: str) -> bool:
        return (owner, name) in self._done

    def original(self, owner: Any, name: str) -> Any:
        """What ``owner.name`` was before :meth:`wrap` (the attribute itself when not patched)."""
        done = self._done.get((owner, name))
        if done is None or done[0] is _MISSING:
            return getattr(owner, name)
        return done[0]

    def restore(self) -> None:
        """Put back every attribute that still holds our wrapper."""
        with self._lock:
            for (owner, name), (original, wrapper) in list(self._done.items()):
                # Identity: a wrapt proxy around our wrapper would answer for our attributes too.
                if vars(owner).get(name) is not wrapper:
                    continue
                if original is _MISSING:
                    delattr(owner, name)
                else:
                    setattr(owner, name, original)
                del self._done[(owner, name)]


class RunAfterExec:
    """A module's loader that runs ``after`` once the module executed (the patch-on-import finders' loader).

    Not a subclass of ``importlib.abc.Loader`` (nor the finder of ``MetaPathFinder``): the import system only
    calls the methods, and ``importlib.abc`` loads ``importlib.resources`` (6 modules) into every process.

    A loader of its own rather than an ``exec_module`` set on the loader found: that loader may be another
    hook's proxy (wrapt's post-import hooks, which the tracing instrumentors use), and an attribute set on a
    proxy lands on the loader it wraps, which then calls itself until ``RecursionError``.
    """

    def __init__(self, loader: Any, after: Callable[[], None]) -> None:
        self._loader, self._after = loader, after

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        for holder, name in ((module, "__loader__"), (getattr(module, "__spec__", None), "loader")):
            if holder is not None and getattr(holder, name, None) is self:
                setattr(holder, name, self._loader)
        self._loader.exec_module(module)
        self._after()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


class Receivers:
    """The signal receivers one integration connected (strong references: a receiver nobody else references
    would otherwise silently stop), so :meth:`disconnect_all` can take every one off again."""

    __slots__ = ("_connected",)

    def __init__(self) -> None:
        self._connected: dict[str, Any] = {}

    def connect(self, signal: Any, receiver: Callable[..., Any], uid: str) -> None:
        """Connect ``receiver`` to ``signal`` once (``uid`` is its ``dispatch_uid``)."""
        signal.connect(receiver, weak=False, dispatch_uid=uid)
        self._connected[uid] = signal

    def disconnect(self, signal: Any, uid: str) -> None:
        signal.disconnect(dispatch_uid=uid)
        self._connected.pop(uid, None)

    def disconnect_all(self) -> None:
        for uid, signal in list(self._connected.items()):
            signal.disconnect(dispatch_uid=uid)
        self._connected.clear()


class _AfterImport:
    """Runs callbacks right after a module's first import (see :func:`after_import`)."""

    def __init__(self) -> None:
        self.pending: dict[str, list[tuple[str, Callable[[], None]]]] = {}
        self.busy: set[str] = set()

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname not in self.pending or fullname in self.busy:
            return None
        self.busy.add(fullname)
        try:
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    break
            else:
                return None
        finally:
            self.busy.discard(fullname)
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader: Any = RunAfterExec(spec.loader, lambda: self._run(fullname))  # not an importlib.abc.Loader
        spec.loader = loader
        return spec

    def _run(self, fullname: str) -> None:
        for _owner, callback in self.pending.pop(fullname, []):
            try:
                callback()
            except Exception:  # never break the application's import
                import logging

                logging.getLogger("django_observe").warning("could not patch %s", fullname, exc_info=True)


_after_import = _AfterImport()


def after_import(module: str, callback: Callable[[], None], *, owner: str = "") -> None:
    """Call ``callback`` now if ``module`` is imported, else right after its first import (nothing is imported
    for it: a library the process never uses costs nothing).

    Args:
        owner: a name under which :func:`forget_after_import` drops the callbacks not run yet (an uninstall).
    """
    if module in sys.modules:
        callback()
        return
    _after_import.pending.setdefault(module, []).append((owner, callback))
    if _after_import not in sys.meta_path:
        sys.meta_path.insert(0, _after_import)


def forget_after_import(owner: str) -> None:
    """Drop the callbacks ``owner`` registered with :func:`after_import` that have not run yet."""
    for module, callbacks in list(_after_import.pending.items()):
        kept = [(who, callback) for who, callback in callbacks if who != owner]
        if kept:
            _after_import.pending[module] = kept
        else:
            del _after_import.pending[module]


def waits_for_import(owner: str) -> bool:
    """Whether ``owner`` has callbacks waiting for a first import."""
    return any(who == owner for callbacks in _after_import.pending.values() for who, _ in callbacks)
