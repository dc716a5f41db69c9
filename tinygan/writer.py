"""One background thread that writes a run's outputs, so that the training thread never waits on a file.

The run loop hands it jobs: a function and the host copies it needs (a checkpoint's arrays, a sample
grid's images, the metric history as it stood), under a key, normally the file the job writes. The
writer runs them one at a time, in order. Three rules keep it bounded and honest:

- **Latest wins per key.** A job whose key is already waiting (not yet started) replaces it in place:
  ``checkpoint.npz`` written for epoch 7 while epoch 6's still waits is one write, of epoch 7. Files
  of their own (``samples/epoch_0007.png``, ``checkpoints/epoch_0010.npz``) have keys of their own and
  are never dropped.
- **A bounded queue.** At most ``max_pending`` distinct keys wait; one more makes :meth:`submit` wait
  for room (back-pressure: the run cannot get further ahead of its outputs than that).
- **No error is lost.** The first job that raises is kept; :meth:`raise_error` or :meth:`flush` on the
  training thread raises that same exception there (its message names the file). :meth:`submit` does
  not: the run loop hands over all of an epoch's outputs (its checkpoint among them) and then asks.
  Later jobs still run: the writer does not stop writing the other files because one failed.

What a job writes is atomic where it must be (:func:`tinygan.checkpoint.save_checkpoint` writes a
temporary file and renames it), so a crash mid-job leaves the previous file whole.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

__all__ = ["OutputWriter"]


class OutputWriter:
    """Runs submitted jobs on one daemon thread; see the module docstring for the rules.

    ``busy_seconds[kind]``: time the writer spent on jobs of each kind; ``wait_seconds``: time the
    submitting thread spent waiting (for room in the queue, or in :meth:`flush`)."""

    def __init__(self, max_pending: int = 16, name: str = "tinygan-writer") -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending: expected a positive integer, received {max_pending!r}")
        self.max_pending = int(max_pending)
        self.busy_seconds: dict[str, float] = {}
        self.wait_seconds = 0.0
        self.replaced = 0  # jobs superseded by a newer one of the same key before they started
        self._cond = threading.Condition()
        self._jobs: OrderedDict[str, tuple[str, Callable[..., Any], tuple[Any, ...]]] = OrderedDict()
        self._running: str | None = None
        self._error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    # -- the training thread's side -------------------------------------------------------------------
    def submit(self, key: str, kind: str, fn: Callable[..., Any], *args: Any) -> None:
        """Queue ``fn(*args)`` under ``key`` (replacing a waiting job of that key); ``kind`` names it in
        :attr:`busy_seconds`."""
        with self._cond:
            if self._closed:
                raise RuntimeError("OutputWriter: submit after close")
            if key in self._jobs:
                self._jobs[key] = (kind, fn, args)  # in place: the order of the files is kept
                self.replaced += 1
                return
            start = time.perf_counter()
            while len(self._jobs) >= self.max_pending:
                self._cond.wait(0.1)
            self.wait_seconds += time.perf_counter() - start
            self._jobs[key] = (kind, fn, args)
            self._cond.notify_all()

    def pending(self) -> int:
        """Jobs waiting or running."""
        with self._cond:
            return len(self._jobs) + (self._running is not None)

    def flush(self, raise_errors: bool = True) -> None:
        """Wait until every job submitted so far has run; then raise the first job error, if any."""
        start = time.perf_counter()
        with self._cond:
            while self._jobs or self._running is not None:
                self._cond.wait(0.1)
        self.wait_seconds += time.perf_counter() - start
        if raise_errors:
            self.raise_error()

    def close(self, drain: bool = True) -> None:
        """Stop the thread: after running every waiting job (``drain``), or dropping them (an abort: the
        job already running still finishes, so no file is left half-renamed). Closing twice is allowed.
        A job's error stays for :meth:`raise_error` / :meth:`take_error`."""
        with self._cond:
            if not drain:
                self._jobs.clear()
            self._closed = True
            self._cond.notify_all()
        start = time.perf_counter()
        self._thread.join()
        self.wait_seconds += time.perf_counter() - start

    def take_error(self) -> BaseException | None:
        """The first job error (and forget it), or None."""
        with self._cond:
            error, self._error = self._error, None
        return error

    def raise_error(self) -> None:
        error = self.take_error()
        if error is not None:
            raise error

    # -- the writer thread ------------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._jobs and not self._closed:
                    self._cond.wait()
                if not self._jobs:
                    return
                key, (kind, fn, args) = self._jobs.popitem(last=False)
                self._running = key
                self._cond.notify_all()  # room in the queue
            start = time.perf_counter()
            try:
                fn(*args)
            except BaseException as exc:  # kept for the training thread; nothing is lost silently
                with self._cond:
                    if self._error is None:
                        self._error = exc
            finally:
                seconds = time.perf_counter() - start
                with self._cond:
                    self.busy_seconds[kind] = self.busy_seconds.get(kind, 0.0) + seconds
                    self._running = None
                    self._cond.notify_all()
