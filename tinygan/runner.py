"""Step runners: how the steps of an epoch are fed and their figures brought back, on the CPU and the GPU.

A runner takes a :class:`tinygan.step.GANStep` and the whole training set, and offers the run loop the
same five calls on either device: ``active()`` (a context for a stretch of steps), ``begin_epoch(perm,
position)``, ``step(sigma)``, ``collect()`` (the figures of the steps since the last call, as host
floats: the only wait for the device inside an epoch) and ``memory()``.

:class:`HostRunner` indexes the batch with NumPy and keeps each step's figures.

:class:`DeviceRunner` runs a step without a single host round trip: the data is uploaded once and the
epoch's batch order once per epoch, the step picks its batch on the device (``gather_rows``), draws its
noise, labels and dropout masks there, Adam's step count lives there, and the figures are summed there
(``step_end``). The whole step is then capturable as one CUDA graph, which
:class:`tinygan.cuda_graph.StepGraph` records on the second step and replays from then on (or, where
capture fails, falls back to plain launches). Every object of the step declares the device arrays
the graph holds by address through its public ``device_arrays()``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from tinygan import backend
from tinygan.step import FIGURES, GANStep


class HostRunner:
    """Steps on the CPU: the batch ``data[perm[k*b:(k+1)*b]]``, the figures of each step kept as floats."""

    def __init__(self, step: GANStep, data: Any, batch_size: int) -> None:
        self.step_fn, self.data, self.batch_size = step, data, int(batch_size)
        self.perm: np.ndarray | None = None
        self.position = 0
        self._pending: list[dict[str, Any]] = []

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        yield

    def begin_epoch(self, perm: np.ndarray, position: int) -> None:
        self.perm, self.position = perm, int(position)

    def step(self, sigma: float | None = None) -> None:
        b = self.batch_size
        idx = self.perm[self.position * b : (self.position + 1) * b]
        if sigma is not None:
            self.step_fn.set_sigma(sigma)
        self._pending.append(self.step_fn(self.data[backend.to_device(idx, backend.device_of(self.data))]))
        self.position += 1

    def collect(self) -> list[tuple[int, dict[str, float]]]:
        """``[(1, figures), ...]``: one entry per step since the last call."""
        rows = [(1, {key: float(figures[key]) for key in FIGURES}) for figures in self._pending]
        self._pending = []
        return rows

    def memory(self) -> dict[str, int]:
        return {}


class DeviceRunner:
    """Steps on the GPU, on a non-blocking stream of their own, captured as one CUDA graph after a first
    eager step unless ``cuda_graph`` is False (see the module's docstring).

    ``data`` is uploaded by the caller on the default stream; :meth:`active` waits for the whole device
    before the stream starts, and for the stream when it ends, so nothing it runs can read data still
    in flight, and the caller can read the results afterwards."""

    def __init__(self, step: GANStep, data: Any, batch_size: int, cuda_graph: bool = True) -> None:
        from tinygan.cuda_graph import StepGraph

        cp = backend.xp_for("gpu")
        self.step_fn, self.data, self.batch_size = step, data, int(batch_size)
        self.stream = cp.cuda.Stream(non_blocking=True)  # capture needs a stream of its own
        self._real = cp.empty((self.batch_size, *data.shape[1:]), dtype=data.dtype)
        self._perm = cp.zeros(len(data), dtype=cp.int64)
        self._position = cp.zeros(1, dtype=cp.int64)  # steps taken in the epoch: which batch is next
        self._sums = cp.zeros(len(FIGURES), dtype=cp.float64)  # figures summed since the last collect
        self._pending = 0
        self.graph = StepGraph(self.stream, self._device_step, self.device_arrays, cuda_graph)

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        cp = backend.xp_for("gpu")
        cp.cuda.Device().synchronize()  # uploads on the default stream (data, a resume's weights) are done
        try:
            with self.stream:
                yield
        finally:
            self.stream.synchronize()

    def begin_epoch(self, perm: np.ndarray, position: int) -> None:
        """Upload the epoch's batch order and position; drop a graph whose arrays were replaced.

        The step's stream first waits for the default stream, where the data, the weights (of a resume
        too) and this runner's own arrays were written: it is non-blocking, so nothing orders the two
        otherwise (never while capturing, which is why this is here and not in :meth:`step`)."""
        cp = backend.xp_for("gpu")
        self.graph.check_arrays()
        self.stream.wait_event(cp.cuda.Stream.null.record())
        with self.stream:
            self._perm.set(np.ascontiguousarray(perm, dtype=np.int64))
            self._position.fill(int(position))
            self._sums.fill(0)
        self._pending = 0

    def step(self, sigma: float | None = None) -> None:
        """One step, with no host synchronization: the first eagerly (it compiles kernels and builds
        what capture may not allocate), the second captured, then replays. ``sigma`` is written to
        device memory first, on the step's stream, outside the graph."""
        with self.stream:
            if sigma is not None:
                self.step_fn.set_sigma(sigma)
            self.graph()
        self._pending += 1

    def _device_step(self) -> None:
        """What the graph holds: pick the batch, train on it, add its figures to the running sums."""
        from tinygan.kernels.gpu import gan

        gan.gather_rows(self.data, self._perm, self._position, self._real)
        figures = self.step_fn(self._real)
        gan.step_end(self._sums, [figures[key] for key in FIGURES], self._position)

    def device_arrays(self) -> list[Any]:
        """Every persistent array a captured step reads or writes (the graph holds their addresses)."""
        return [self.data, self._perm, self._position, self._sums, self._real, *self.step_fn.device_arrays()]

    def collect(self) -> list[tuple[int, dict[str, float]]]:
        """``[(count, sums)]``: the figures summed over the ``count`` steps since the last call."""
        if not self._pending:
            return []
        with self.stream:
            sums = self._sums.get()
            self._sums.fill(0)
        count, self._pending = self._pending, 0
        return [(count, {key: float(value) for key, value in zip(FIGURES, sums)})]

    def memory(self) -> dict[str, int]:
        """GPU memory in bytes: CuPy's default pool (in use, held), the CUDA graph's private pool, and
        what the whole device has in use (every process and the CUDA context included)."""
        cp = backend.xp_for("gpu")
        pool = cp.get_default_memory_pool()
        free, total = cp.cuda.runtime.memGetInfo()
        return {
            "pool_used": int(pool.used_bytes()),
            "pool_held": int(pool.total_bytes()),
            "graph_pool": self.graph.pool_bytes(),
            "device_used": int(total - free),
        }


def make_runner(step: GANStep, data: Any, batch_size: int, cuda_graph: bool = True) -> HostRunner | DeviceRunner:
    """The runner for the step's device."""
    if step.device == "gpu":
        return DeviceRunner(step, data, batch_size, cuda_graph)
    return HostRunner(step, data, batch_size)
