"""A background writer: callers queue items and never wait for the database.

Usage records (``server/usage.py``) and safety audit events (``safety/audit.py``) are written
this way. One daemon thread, started on the first item, takes the first queued item and then
whatever follows within ``coalesce_seconds`` (up to ``batch_size``), and hands the batch to
:meth:`BackgroundWriter._write`: one commit per window instead of one per request keeps the
writer's CPU off the requests' latency. ``flush`` waits for what was queued so far;
``close`` writes everything still queued, then stops the thread.
"""

from __future__ import annotations

import queue
import threading
import time
from abc import ABC, abstractmethod
from typing import Generic, TypeVar

from hearth.errors import HearthError

T = TypeVar("T")


class BackgroundWriter(ABC, Generic[T]):
    def __init__(self, what: str, batch_size: int, coalesce_seconds: float) -> None:
        self._what = what  # "usage log": in messages and the thread's name
        self._batch_size = batch_size
        self._coalesce_seconds = coalesce_seconds
        self._queue: queue.SimpleQueue[T | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._drained = threading.Condition(self._lock)
        self._pending = 0  # queued, not yet written (or given up on)
        self._writer: threading.Thread | None = None
        self._closed = False

    @abstractmethod
    def _write(self, items: list[T]) -> None:
        """Write one batch (retrying as the subclass sees fit); must not raise."""

    def _queue_item(self, item: T) -> None:
        """Queue ``item``; never waits for the database. Thread-safe."""
        with self._lock:
            if self._closed:
                raise HearthError(f"the {self._what} is closed")
            self._pending += 1
            # Under the lock, so close()'s stop marker always comes after every item.
            self._queue.put(item)
            if self._writer is None:
                name = f"hearth-{self._what.replace(' ', '-')}-writer"
                self._writer = threading.Thread(target=self._run, name=name, daemon=True)
                self._writer.start()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every item so far is written; False if ``timeout`` ran out first."""
        with self._drained:
            return self._drained.wait_for(lambda: self._pending == 0, timeout)

    def close(self) -> None:
        """Write everything still queued, then stop the writer. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            writer = self._writer
            if writer is not None:
                self._queue.put(None)
        if writer is not None:
            writer.join()

    def _run(self) -> None:
        stop = False
        while not stop:
            batch = self._next_batch()
            stop = None in batch
            items = [item for item in batch if item is not None]
            if items:
                self._write(items)
            with self._drained:
                self._pending -= len(items)
                self._drained.notify_all()

    def _next_batch(self) -> list[T | None]:
        batch = [self._queue.get()]
        deadline = time.monotonic() + self._coalesce_seconds
        while len(batch) < self._batch_size and batch[-1] is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(self._queue.get(timeout=remaining))
            except queue.Empty:
                break
        return batch
