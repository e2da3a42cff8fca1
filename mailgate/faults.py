"""Crash points for the crash tests (``MAILGATE_CRASH_AT=name[:n]``).

A crash test must kill a real daemon at the most delicate moments — after a
commit and before the answer that reports it — which a signal sent from
outside can only hit by luck. With the variable unset (always, outside the
tests) ``crash_point`` is one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
import threading

_SPEC = os.environ.get("MAILGATE_CRASH_AT", "")
_NAME, _, _COUNT = _SPEC.partition(":")
_TARGET = int(_COUNT) if _COUNT.isdigit() else 1
_seen = 0
_lock = threading.Lock()
# Set in the processing worker: a crash there takes the daemon down too, as
# a power cut would.
in_worker = False


def crash_point(name: str) -> None:
    """SIGKILL this process the n-th time it passes the named point."""
    global _seen
    if not _NAME or name != _NAME:
        return
    with _lock:
        _seen += 1
        if _seen >= _TARGET:
            if in_worker:
                os.kill(os.getppid(), signal.SIGKILL)
            os.kill(os.getpid(), signal.SIGKILL)
