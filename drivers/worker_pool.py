"""Persistent worker threads, each owning a fixed block of worlds.

Work for a block always runs on the same thread, so per-thread resources such as OpenGL contexts
stay valid, and MuJoCo's GIL-free stepping runs blocks in parallel.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable


def split_rows(count: int, parts: int) -> list[slice]:
    """Contiguous, nearly equal blocks covering range(count)."""
    parts = max(1, min(parts, count))
    bounds = [round(i * count / parts) for i in range(parts + 1)]
    return [slice(bounds[i], bounds[i + 1]) for i in range(parts)]


class BlockWorkers:
    """Runs ``fn(block_index, rows)`` for every block; block 0 runs on the calling thread."""

    def __init__(self, count: int, num_threads: int):
        self.blocks = split_rows(count, num_threads)
        self._inboxes: list[queue.Queue] = []
        self._done: queue.Queue = queue.Queue()
        self._threads = []
        for index in range(1, len(self.blocks)):
            inbox: queue.Queue = queue.Queue()
            thread = threading.Thread(
                target=self._serve, args=(index, inbox), name=f"world-block-{index}", daemon=True
            )
            thread.start()
            self._inboxes.append(inbox)
            self._threads.append(thread)

    def _serve(self, index: int, inbox: queue.Queue) -> None:
        while True:
            fn = inbox.get()
            if fn is None:
                return
            try:
                fn(index, self.blocks[index])
                self._done.put(None)
            except BaseException as exc:  # handed to the caller, which re-raises
                self._done.put(exc)

    def run(self, fn: Callable[[int, slice], None]) -> None:
        for inbox in self._inboxes:
            inbox.put(fn)
        first_error: BaseException | None = None
        try:
            fn(0, self.blocks[0])
        except BaseException as exc:
            first_error = exc
        for _ in self._inboxes:
            result = self._done.get()
            if result is not None and first_error is None:
                first_error = result
        if first_error is not None:
            raise first_error

    def close(self) -> None:
        for inbox in self._inboxes:
            inbox.put(None)
        for thread in self._threads:
            thread.join(timeout=5)
        self._inboxes.clear()
        self._threads.clear()
