"""Two independent products of a backward pass, run side by side on two CUDA streams.

A layer's backward forms dz, then two products that only read it: the weight gradient (dW += x.T @ dz) and the
input gradient (dx = dz @ W.T, plus col2im for a convolution). On the seed models' small layers either alone may
leave SMs idle (a 125-row GEMM has few tiles), so the backward forks: the weight gradient runs on a second stream
while the input gradient runs on the current one, and the current stream waits for both before it goes on::

    with fork_join() as side:
        with side:
            accumulate_product(dW, ...)     # on the side stream, after everything issued before the fork
        dx = gemm(dz, W, transb=True)       # on the current stream, meanwhile
    # here the current stream has waited for the side stream's work

Inside a CUDA graph capture the fork and the join become edges of the graph (the side stream joins the capture
through the fork's event), so a replay runs the two branches concurrently too. Only the order between
independent kernels changes: every value is computed by the same kernels from the same inputs, so the bits are
those of one stream (the GPU tests compare them).

Measured on an H200 (bench/results/step-precisions-2026-12-02.md, tenth session, ``bench.step_precisions
--one-stream``): the MNIST step at FP32 0.503 -> 0.493 ms, the DCGAN's 3.427 -> 3.403 ms, no change at bf16. The
branches do overlap, but two GEMMs sharing the SMs each run slower, and cuBLAS's split-K kernels already spread
the small products.

A model's backward goes one step further (:func:`deferred_joins`, opened by ``Sequential.backward``): the forks
of its layers do not join at each layer's end but once, when the whole backward ends. Each layer's weight gradient
then queues on the side stream while the current stream goes straight on to the next layer's dz and input
gradient, which need only the input gradient; the join before the optimizer reads the gradients waits for them
all.

Rules for the code inside the side block:
- it may only read what exists before the fork and write buffers no one reads before the join;
- every array the side block reads must stay referenced until the join (CuPy's pool hands a freed block to the
  next allocation on the stream that freed it, which may still be running the side's kernels otherwise): name
  them in ``fork_join(keep=...)``, which holds them until a deferred join.

The side stream is one per (device, thread, current stream), created with its cuBLAS handle (tinygan's ctypes
cuBLAS keeps a handle and workspace per stream) at the first fork outside a capture. A fork met first inside a
capture, or inside :func:`one_stream`, runs both branches on the current stream.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Iterator
from typing import NamedTuple

import cupy

from ._common import capturing


class _Side(NamedTuple):
    stream: cupy.cuda.Stream
    fork: cupy.cuda.Event  # recorded on the current stream; the side stream waits for it
    join: cupy.cuda.Event  # recorded on the side stream; the current stream waits for it


_sides: dict[tuple[int, int, int], _Side] = {}
_serial: contextvars.ContextVar[bool] = contextvars.ContextVar("tinygan_one_stream", default=False)
# Inside deferred_joins: the forks whose join waits for its end, by the current stream's pointer.
_deferred: contextvars.ContextVar[dict | None] = contextvars.ContextVar("tinygan_deferred_joins", default=None)


@contextlib.contextmanager
def one_stream() -> Iterator[None]:
    """Inside this block :func:`fork_join` forks nothing: both branches run on the current stream, in program
    order. For comparisons (the GPU tests' bitwise check, ``bench.step_precisions``' one-stream rows); a graph
    captured inside it stays serial when replayed outside."""
    token = _serial.set(True)
    try:
        yield
    finally:
        _serial.reset(token)


def _side_for(main: cupy.cuda.Stream) -> _Side | None:
    key = (cupy.cuda.Device().id, threading.get_ident(), main.ptr)
    side = _sides.get(key)
    if side is None and not capturing():  # main is the current stream
        from .cublas import bind_stream

        stream = cupy.cuda.Stream(non_blocking=True)
        bind_stream(stream)  # its cuBLAS handle and workspace now, since capture may not create them
        side = _sides[key] = _Side(stream, cupy.cuda.Event(disable_timing=True), cupy.cuda.Event(disable_timing=True))
    return side


@contextlib.contextmanager
def fork_join(keep: tuple = ()) -> Iterator[cupy.cuda.Stream]:
    """Yields the stream for the side branch (enter it with ``with side:``); the current stream waits for the
    side branch's work when the block ends, even when it raised, or, inside :func:`deferred_joins`, when that
    block ends. ``keep``: the arrays the side branch reads, held until then (outside :func:`deferred_joins` the
    caller's own references last until the join). See the module's docstring for the rules."""
    main = cupy.cuda.get_current_stream()
    side = None if _serial.get() else _side_for(main)
    if side is None:
        yield main
        return
    side.fork.record(main)
    side.stream.wait_event(side.fork)
    pending = _deferred.get()
    try:
        yield side.stream
    finally:
        if pending is not None:
            pending.setdefault(main.ptr, (main, side, []))[2].extend(keep)
        else:
            side.join.record(side.stream)
            main.wait_event(side.join)


@contextlib.contextmanager
def deferred_joins() -> Iterator[None]:
    """Inside this block :func:`fork_join`'s blocks end without a join: their side branches queue on the side
    stream in program order, each after its own fork, and the current stream waits for all of them once, when
    this block ends (even when it raised). A model's backward runs inside one (``tinygan.backend.deferred_joins``
    in ``Sequential.backward``): a layer's weight gradient then overlaps the next layers' work instead of holding
    the current stream at every layer's end. Nested blocks join with the outermost."""
    if _deferred.get() is not None:
        yield
        return
    pending: dict[int, tuple[cupy.cuda.Stream, _Side, list]] = {}
    token = _deferred.set(pending)
    try:
        yield
    finally:
        _deferred.reset(token)
        for main, side, _keep in pending.values():
            side.join.record(side.stream)
            main.wait_event(side.join)
