"""Readiness drain: on SIGTERM, /readyz answers 503 while liveness stays 200.

With ``HEALTH_DRAIN_SECONDS`` > 0 the server's own SIGTERM handling is delayed
by that long, so a load balancer sees the 503 and stops routing before the
server stops accepting connections (Kubernetes' ``--shutdown-delay-duration``).
"""

from __future__ import annotations

import logging
import os
import signal
import threading

__all__ = ["install_sigterm_handler", "is_draining", "start_draining", "stop_draining"]

logger = logging.getLogger("django_observe.health")

# Set by SIGTERM (a process fact, like the signal itself): shared by every runtime this process builds.
_draining = threading.Event()
_HANDLER_MARK = "_django_observe_drain"


def is_draining() -> bool:
    return _draining.is_set()


def start_draining() -> None:
    """Make /readyz answer 503 from now on (also usable from a preStop hook or a signal of your own)."""
    _draining.set()


def stop_draining() -> None:
    _draining.clear()


def install_sigterm_handler(delay: float = 0.0) -> bool:
    """Chain a SIGTERM handler that starts draining, then hands over to the previous handler.

    Only possible from the main thread; returns False elsewhere.
    """
    if threading.current_thread() is not threading.main_thread():
        return False
    previous = signal.getsignal(signal.SIGTERM)
    if getattr(previous, _HANDLER_MARK, False):
        return False  # ours is installed already

    def hand_over(signum, frame):
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

    def on_sigterm(signum, frame):
        if is_draining() or delay <= 0:
            start_draining()
            hand_over(signum, frame)
            return
        start_draining()
        logger.info("SIGTERM received: readiness is now 503; shutting down in %.1f s", delay)
        # The second SIGTERM arrives in the main thread again, where hand_over may run.
        timer = threading.Timer(delay, os.kill, (os.getpid(), signal.SIGTERM))
        timer.daemon = True
        timer.start()

    setattr(on_sigterm, _HANDLER_MARK, True)
    signal.signal(signal.SIGTERM, on_sigterm)
    return True
