"""One training step recorded as a CUDA graph and replayed: the mechanism, apart from what the step does.

These models are small, so launching a step's ~200 kernels one by one costs more than running them.
A CUDA graph records the launches once and replays them with one call. What that asks of the step,
and what :class:`StepGraph` takes care of:

- The first call runs eagerly: it compiles the kernels and allocates what capture may not (CuPy's
  caches, cuBLAS's handle for the stream). The second call is captured, later calls replay.
- A replay reads and writes the addresses captured, so the step's persistent arrays must stay where
  they are. ``arrays`` lists them; :meth:`StepGraph.check_arrays` drops the graph when any moved (a
  checkpoint loaded into new arrays, say), and the next calls warm up and capture again.
- Scratch memory allocated during capture comes from a pool of the graph's own, kept as long as the
  graph: eager code can then never be handed memory that a replay writes into.
- Where capture fails, the step runs as plain launches from then on, after a one-line note: the same
  kernels in the same order, so the same numbers.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


class StepGraph:
    """Run ``step`` (no arguments, no host synchronization) on ``stream``: eagerly first, then captured
    as one CUDA graph and replayed. ``arrays()`` returns every persistent array the step touches.
    Device values that change from step to step but come from the host (a graph cannot record them)
    are written by the caller on ``stream`` before each call (``tinygan.runner.DeviceRunner.step``).
    With ``enabled=False`` every call launches the kernels one by one. ``what`` names the work in the one-line
    note printed when capture fails."""

    def __init__(
        self,
        stream: Any,
        step: Callable[[], None],
        arrays: Callable[[], list[Any]],
        enabled: bool = True,
        what: str = "the training step",
    ):
        self.what = what  # for the note when capture fails
        self.stream = stream
        self.step = step
        self.arrays = arrays
        self.enabled = enabled
        self.graph: Any = None
        self.pool: Any = None  # the graph's private memory pool
        self.failed = False  # capture was tried and failed: plain launches from now on
        self.capturing = False  # True while the step is being recorded (it runs, but nothing executes)
        self._warm = False
        self._keep: list[Any] = []  # the captured arrays, kept alive as long as the graph
        self._signature: tuple[int, ...] = ()

    def __call__(self) -> None:
        with self.stream:
            if self.graph is None and self._warm and self.enabled and not self.failed:
                self._capture()
            if self.graph is not None:
                self.graph.launch(self.stream)
            else:
                self.step()
                self._warm = True

    def check_arrays(self) -> None:
        """Drop the graph if any of the step's arrays moved since it was captured."""
        if self.graph is not None and self._signature != self._addresses():
            self.drop()

    def drop(self) -> None:
        self.graph, self.pool, self._keep, self._signature = None, None, [], ()
        self._warm = False

    def pool_bytes(self) -> int:
        return int(self.pool.total_bytes()) if self.pool is not None else 0

    def _addresses(self) -> tuple[int, ...]:
        return tuple(int(a.data.ptr) for a in self.arrays())

    def _capture(self) -> None:
        import cupy as cp

        from tinygan.kernels.gpu import cublas

        stream = self.stream
        pool = cp.cuda.MemoryPool()
        graph, error = None, None
        try:
            cublas.bind_stream(stream)  # the ctypes cuBLAS handle must know the stream before capture
            self.capturing = True
            with cp.cuda.using_allocator(pool.malloc):
                stream.begin_capture()
                try:
                    self.step()
                except Exception as exc:  # whatever went wrong, there is no graph
                    error = exc
                finally:  # even on Ctrl-C: a stream left capturing would refuse all later work
                    try:
                        graph = stream.end_capture()
                    except Exception as exc:
                        error = error or exc
            if graph is not None and error is None:
                graph.upload(stream)
        except Exception as exc:
            error = error or exc
        finally:
            self.capturing = False
        if error is not None or graph is None:
            self.failed = True
            first_line = str(error).splitlines()[0] if str(error) else ""
            print(
                f"note: {self.what} could not be captured as a CUDA graph ({type(error).__name__}: "
                f"{first_line}); continuing with plain kernel launches",
                file=sys.stderr,
            )
            return
        self.graph, self.pool = graph, pool
        self._keep = self.arrays()
        self._signature = self._addresses()
        # The eager warm-up's scratch memory now sits unused in the default pool.
        cp.get_default_memory_pool().free_all_blocks()
