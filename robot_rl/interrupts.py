"""Ctrl-C held back while state that must stay whole is written (an episode into a store, a
training step into the replay and the weights)."""

from __future__ import annotations

import contextlib
import signal
import threading


@contextlib.contextmanager
def defer_sigint():
    """Hold Ctrl-C until the block finishes, then hand it to the handler that was in place
    (KeyboardInterrupt by default; nothing where SIGINT is ignored, as in a background job).
    Main thread only; elsewhere a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending = []
    previous = signal.signal(signal.SIGINT, lambda *a: pending.append(a))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if pending:
            signal.raise_signal(signal.SIGINT)
