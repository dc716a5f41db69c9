"""Versions of the CPU convolution kernels side by side, per layer of the DCGAN, each validated before it is timed.

The CPU counterpart of ``bench/dev/kernel_versions.py``: production is the latest version (``kernels/cpu/conv.py``);
earlier ones are kept here so that a reader sees what each step changed and what it bought.

- v1: the full im2col matrix (C kh kw, N Ho Wo), one multi-threaded GEMM of NumPy's BLAS over it, col2im of the
  full matrix; the forward keeps the matrix for the weight gradient (``bench/dev/cpu_conv_v1.py``).
- v1-blas1: v1 with NumPy's BLAS held at one thread: what the GEMM's own threads buy (or cost) here.
- v2: tiles of a few images, each tile's im2col/col2im in the cache and its product a one-thread sgemm, the
  tiles shared out to one thread per core from a counter (``kernels/cpu/tiles.py``); nothing of the size of the
  full matrix is made. 1 MiB column buffers, 4 MiB for weight gradients. im2col/col2im channels-first, through
  the index tables of v1 (production with ``NHWC_MIN_CHANNELS`` out of reach).
- v3: v2, but a pass whose unfolded side has 16 channels or more works channels-last: the tile is transposed to
  a zero-padded NHWC buffer, and every patch is kh kw runs of C contiguous values (copies and vector adds
  instead of gathers through a table).
- v4: v3 with 1 MiB weight-gradient tiles (a core's L2) instead of 4 MiB; frozen in ``bench/dev/cpu_conv_v4.py``,
  which v2-v4 run on (v2 and v3 by changing its tile and layout constants).
- v4-256k, v4-4m: v4 with other tile sizes (256 KiB / 4 MiB for every pass); v4-w16m: 16 MiB weight tiles.
- v4-1t: v4 on one thread (how much the second core adds under the present load).
- v5 (production): v4 with the channels-last forward product as ``cols @ W^T`` (v4: ``W @ cols.T``, 10-20%
  slower in OpenBLAS), its output written through ``_from_padded_nhwc``, and the bias gradient's channel sums
  in 8 partial sums. v5-w2m/-w4m/-w8m: larger weight-gradient tiles.
- v6 (not adopted): v5 with every strided fold (ConvTranspose2d's forward, Conv2d's input gradient) phase by
  phase instead of GEMM + col2im (``bench/dev/cpu_conv_v6.py``).
- torch: PyTorch's own kernels (oneDNN), where installed: ``F.conv2d``/``F.conv_transpose2d`` and
  ``torch.ops.aten.convolution_backward`` for each gradient alone.

    python -m bench.dev.cpu_conv_versions                        # every layer and pass
    python -m bench.dev.cpu_conv_versions --only D2 --rounds 9

Validation: every version's outputs against tinygan's reference kernels in float64 on fresh random inputs
(error = max|got - want| / max|want|, tolerance 1e-4). A version that disagrees is reported and not timed.
Timing: the versions take turns call by call, ``--rounds`` times, in one process (the machine is shared: a
turn-by-turn comparison sees the same load); the median per version is reported with the 1-minute load.
``--clock cpu`` instead runs every version on one thread (one tile worker, BLAS and PyTorch at one thread) and
reports the calling thread's CPU time (``time.thread_time``): what a pass costs a core, nearly independent of
what the other processes on the machine do (it does not show how well two workers share the tiles).
"""

# ruff: noqa: I001  (tinygan is imported before NumPy on purpose)
from __future__ import annotations

import argparse
import contextlib
import math
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import tinygan  # noqa: F401  (first: OPENBLAS_THREAD_TIMEOUT before NumPy loads OpenBLAS)
import numpy as np  # noqa: E402

from tinygan.kernels import cpu as production  # noqa: E402
from tinygan.kernels import reference as R  # noqa: E402
from tinygan.kernels.cpu import conv as conv_module  # noqa: E402

from bench.dev import cpu_conv_v1 as v1  # noqa: E402
from bench.dev import cpu_conv_v4 as v4  # noqa: E402
from bench.dev import cpu_conv_v6 as v6  # noqa: E402

TOLERANCE = 1e-4

# (name, kind, N, C_in, size, C_out, kernel, stride, padding, output_padding): the DCGAN's convolutions at
# the batch the D step runs them at (2N = 256 real and fake images) and the generator's at N = 128.
LAYERS = [
    ("D1", "conv", 256, 3, 32, 64, 3, 1, 1, 0),
    ("D2", "conv", 256, 64, 32, 128, 3, 2, 1, 0),
    ("D3", "conv", 256, 128, 16, 128, 3, 2, 1, 0),
    ("D4", "conv", 256, 128, 8, 32, 3, 2, 1, 0),
    ("G1", "convT", 128, 128, 4, 128, 5, 2, 2, 1),
    ("G2", "convT", 128, 128, 8, 64, 5, 2, 2, 1),
    ("G3", "convT", 128, 64, 16, 3, 5, 2, 2, 1),
]
PASSES = ("fwd", "data", "weight")


def layer_flops(layer: tuple, n: int | None = None) -> float:
    """Multiply-adds x 2 of one pass (each of the three passes of a layer does the same number)."""
    name, kind, N, C, size, O, k, s, p, op = layer
    N = N if n is None else n
    if kind == "conv":
        out = (size + 2 * p - k) // s + 1
        return 2.0 * N * O * out * out * C * k * k
    return 2.0 * N * C * size * size * O * k * k


def step_flops() -> dict[str, float]:
    """The DCGAN training step's GEMM work (batch 128), pass by pass as one GANStep call runs it."""
    n = 128
    g_layers = [layer for layer in LAYERS if layer[1] == "convT"]
    d_layers = [layer for layer in LAYERS if layer[1] == "conv"]
    dense_g = 2.0 * n * 100 * 2048
    dense_d = 2.0 * 512 * 1
    parts = {
        # D step: G forward (n), D forward + weight gradients (2n), D data gradients except the first layer's
        "D step: G forward": dense_g + sum(layer_flops(x, n) for x in g_layers),
        "D step: D forward": 2 * n * dense_d + sum(layer_flops(x, 2 * n) for x in d_layers),
        "D step: D weight gradients": 2 * n * dense_d + sum(layer_flops(x, 2 * n) for x in d_layers),
        "D step: D data gradients": 2 * n * dense_d + sum(layer_flops(x, 2 * n) for x in d_layers[1:]),
        # G step: G forward, D forward and data gradients (n, no weight gradients), G backward (no dz)
        "G step: G forward": dense_g + sum(layer_flops(x, n) for x in g_layers),
        "G step: D forward": n * dense_d + sum(layer_flops(x, n) for x in d_layers),
        "G step: D data gradients": n * dense_d + sum(layer_flops(x, n) for x in d_layers),
        "G step: G weight gradients": dense_g + sum(layer_flops(x, n) for x in g_layers),
        "G step: G data gradients": sum(layer_flops(x, n) for x in g_layers),
    }
    return parts


# -- versions ---------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def blas_threads(n: int):
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=n, user_api="blas"):
        yield


@contextlib.contextmanager
def tile_sizes(tile: int, weight: int, module: Any = v4):
    saved = module.TILE_BYTES, module.WEIGHT_TILE_BYTES
    module.TILE_BYTES, module.WEIGHT_TILE_BYTES = tile, weight
    try:
        yield
    finally:
        module.TILE_BYTES, module.WEIGHT_TILE_BYTES = saved


@contextlib.contextmanager
def channels_first(module: Any = v4):
    saved = module.NHWC_MIN_CHANNELS
    module.NHWC_MIN_CHANNELS = 10**9
    try:
        yield
    finally:
        module.NHWC_MIN_CHANNELS = saved


@contextlib.contextmanager
def both(first, second):
    with first, second:
        yield


@contextlib.contextmanager
def one_worker():
    from tinygan.kernels.cpu import tiles

    saved = tiles.workers
    tiles.workers = lambda: 1
    conv_module.workers = v4.workers = lambda: 1
    try:
        yield
    finally:
        tiles.workers = saved
        conv_module.workers = v4.workers = saved


VERSIONS: dict[str, tuple[Any, Callable[[], Any]]] = {
    "v1": (v1, contextlib.nullcontext),
    "v1-blas1": (v1, lambda: blas_threads(1)),
    "v2": (v4, lambda: both(channels_first(), tile_sizes(1 << 20, 4 << 20))),
    "v3": (v4, lambda: tile_sizes(1 << 20, 4 << 20)),
    "v4": (v4, contextlib.nullcontext),
    "v4-256k": (v4, lambda: tile_sizes(256 << 10, 256 << 10)),
    "v4-4m": (v4, lambda: tile_sizes(4 << 20, 4 << 20)),
    "v4-w16m": (v4, lambda: tile_sizes(1 << 20, 16 << 20)),
    "v4-1t": (v4, one_worker),
    "v5": (production, contextlib.nullcontext),
    "v5-w2m": (production, lambda: tile_sizes(1 << 20, 2 << 20, conv_module)),
    "v5-w4m": (production, lambda: tile_sizes(1 << 20, 4 << 20, conv_module)),
    "v5-w8m": (production, lambda: tile_sizes(1 << 20, 8 << 20, conv_module)),
    "v6": (v6, contextlib.nullcontext),
}


def make_inputs(layer: tuple, rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    name, kind, N, C, size, O, k, s, p, op = layer
    if kind == "conv":
        out = (size + 2 * p - k) // s + 1
        W, dy_shape = (O, C, k, k), (N, O, out, out)
    else:
        out = (size - 1) * s - 2 * p + k + op
        W, dy_shape = (C, O, k, k), (N, O, out, out)
    return {
        "x": rng.standard_normal((N, C, size, size)).astype(dtype),
        "W": (rng.standard_normal(W) / math.sqrt(C * k * k)).astype(dtype),
        "b": rng.standard_normal(O).astype(dtype),
        "dy": rng.standard_normal(dy_shape).astype(dtype),
    }


def call(K: Any, layer: tuple, pass_: str, a: dict[str, np.ndarray]) -> Callable[[], tuple]:
    """A no-argument call of one pass; the forward's cache for the weight gradient is made outside it."""
    name, kind, N, C, size, O, k, s, p, op = layer
    ss, pp, oo = (s, s), (p, p), (op, op)
    if kind == "conv":
        if pass_ == "fwd":
            return lambda: (K.conv2d_forward(a["x"], a["W"], a["b"], ss, pp)[0],)
        if pass_ == "data":
            return lambda: (K.conv2d_backward_data(a["dy"], a["W"], a["x"].shape, ss, pp),)
        cols = K.conv2d_forward(a["x"], a["W"], a["b"], ss, pp)[1]
        return lambda: K.conv2d_backward_weight(a["dy"], cols, a["W"].shape)
    if pass_ == "fwd":
        return lambda: (K.conv_transpose2d_forward(a["x"], a["W"], a["b"], ss, pp, oo),)
    if pass_ == "data":
        return lambda: (K.conv_transpose2d_backward_data(a["dy"], a["W"], ss, pp)[0],)
    dy_cols = K.conv_transpose2d_backward_data(a["dy"], a["W"], ss, pp)[1]
    return lambda: K.conv_transpose2d_backward_weight(a["dy"], a["x"], a["W"].shape, ss, pp, dy_cols=dy_cols)


def torch_call(layer: tuple, pass_: str, a: dict[str, np.ndarray]) -> Callable[[], tuple]:
    import torch
    import torch.nn.functional as F

    name, kind, N, C, size, O, k, s, p, op = layer
    t = {key: torch.from_numpy(v) for key, v in a.items()}
    transposed = kind == "convT"
    if pass_ == "fwd":
        if transposed:
            return lambda: (F.conv_transpose2d(t["x"], t["W"], t["b"], s, p, op),)
        return lambda: (F.conv2d(t["x"], t["W"], t["b"], s, p),)
    mask = [pass_ == "data", pass_ == "weight", pass_ == "weight"]
    bias_sizes = [O]

    def run() -> tuple:
        dx, dW, db = torch.ops.aten.convolution_backward(
            t["dy"], t["x"], t["W"], bias_sizes, [s, s], [p, p], [1, 1], transposed, [op, op], 1, mask
        )
        return (dx,) if pass_ == "data" else (dW, db)

    return run


def reference(layer: tuple, pass_: str, a: dict[str, np.ndarray]) -> tuple:
    a64 = {key: v.astype(np.float64) for key, v in a.items()}
    return call(R, layer, pass_, a64)()


def error(got: tuple, want: tuple) -> float:
    worst = 0.0
    for g, w in zip(got, want, strict=True):
        g = np.asarray(g, dtype=np.float64)
        if g.shape != w.shape:
            return float("inf")
        scale = float(np.max(np.abs(w))) or 1.0
        worst = max(worst, float(np.max(np.abs(g - w))) / scale)
    return worst if np.isfinite(worst) else float("inf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="*", help="layer names (D1..D4, G1..G3)")
    parser.add_argument("--passes", nargs="*", default=list(PASSES))
    parser.add_argument("--versions", nargs="*", default=[*VERSIONS, "torch"])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    args = parser.parse_args()
    try:
        import torch

        torch.set_num_threads(1 if args.clock == "cpu" else len(os.sched_getaffinity(0)))
    except ImportError:
        args.versions = [v for v in args.versions if v != "torch"]
    rng = np.random.default_rng(12)
    clock = time.thread_time if args.clock == "cpu" else time.perf_counter
    one_thread = (lambda: both(one_worker(), blas_threads(1))) if args.clock == "cpu" else contextlib.nullcontext
    print(
        f"clock {args.clock}; load {os.getloadavg()[0]:.2f}; versions {' '.join(args.versions)}; "
        f"median of {args.rounds} rounds, ms"
    )
    totals: dict[str, float] = dict.fromkeys(args.versions, 0.0)
    for layer in LAYERS:
        if args.only and layer[0] not in args.only:
            continue
        for pass_ in args.passes:
            a = make_inputs(layer, rng, np.float32)
            want = reference(layer, pass_, a)
            runners: dict[str, tuple[Callable, Callable]] = {}
            notes = []
            for version in args.versions:
                if version == "torch":
                    fn, ctx = torch_call(layer, pass_, a), contextlib.nullcontext
                else:
                    K, ctx = VERSIONS[version]
                    with ctx():
                        fn = call(K, layer, pass_, a)
                with ctx():
                    err = error(fn(), want)
                if err > TOLERANCE:
                    notes.append(f"{version} WRONG ({err:.1e})")
                    continue
                runners[version] = (fn, ctx)
            samples: dict[str, list[float]] = {v: [] for v in runners}
            for _ in range(args.rounds):
                for version, (fn, ctx) in runners.items():
                    with ctx(), one_thread():
                        start = clock()
                        fn()
                        samples[version].append(clock() - start)
            gflop = layer_flops(layer) / 1e9
            cells = []
            for version in args.versions:
                if version in samples:
                    ms = 1e3 * statistics.median(samples[version])
                    totals[version] += ms
                    cells.append(f"{version} {ms:7.1f} ({gflop / ms * 1e3:5.0f} GF/s)")
            print(f"{layer[0]} {pass_:6s} {gflop:5.2f} GF | " + " | ".join(cells + notes), flush=True)
    print("sum of medians, ms: " + ", ".join(f"{v} {t:.0f}" for v, t in totals.items()))
    print(f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
