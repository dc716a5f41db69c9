"""Versions of a GPU kernel side by side, each validated against the NumPy reference before it is timed.

In the manner of llm.c's ``dev/cuda``: the production kernel (in ``kernels/gpu``) is the latest version
of its op that won (a candidate after it waits for its timing); the others live in
``bench/dev/conv_versions.cu``, so a reader sees what each step changed and what it bought, and whoever
tries a v(N+1) has the harness ready. The ops are the convolution helpers that cost most in the DCGAN
training step besides the GEMMs:

- ``im2col``: v1 one thread per element of cols, 64-bit index math; v2 (production until the eighth session)
  32-bit index math where every offset fits, and each thread decodes its column once for a run of 16 rows;
  v3 v2 with 4 consecutive columns a thread (2 or 1 where N*Ho*Wo is not a multiple of 4), whose 4 values of
  a row go out as one vector store, sharing the row loop and the tap stepping. Prediction (eighth session, from
  the step profile on an H200: 214 us in 11 launches at tf32, and the bfloat16 version, which writes half the
  bytes, no faster: the issue rate binds, not the bytes): 1.4x v2 on the large layers. Outcome (H200): 1.34x at
  stride 1, but slower at stride 2 (a thread's reads lie two apart, a warp's loads touch twice the sectors):
  168 -> 202 us over the DCGAN's shapes. v4 (production) takes v3 at stride 1 and v2 at stride 2.
- ``im2col_bf16`` (bfloat16 cols, precision "bf16"; production's kernel at a chosen number of columns a
  thread): v4 as float32's rule (4 at stride 1, 1 at stride 2); v5 2 at every stride; v6 4 at every stride;
  v7 (production) 4 at stride 1, 2 at stride 2. Prediction (ninth session): at stride 2 a bfloat16 row is
  written 2 bytes a thread, so pairing columns halves the store instructions and may pay for the extra
  sectors that cost float32's v3. Outcome (H200): v5 1.06-1.26x v4 on every stride-2 layer, 0.88x at stride 1;
  v6 1.37x on D conv2 only and 0.74-0.86x on the rest; 175 -> 148 us (v5) over the DCGAN's shapes.
- ``col2im`` (a gather, one thread per pixel: no atomics, a fixed summation order, the same bits in every
  version): v1 visits all kh*kw taps and tests each, 64-bit; v2 the same with 32-bit index math; v3 visits
  only the taps that can reach the pixel (about 9 of 25 for a 5x5 stride-2 kernel); v4 numbers the pixels
  phase by phase, so a warp's threads take the same taps in lockstep; v5 puts v4 on a 2-D grid (slower: most
  blocks of the small planes idle); v6 (production until the seventh session) is v4 with the kernel size and
  stride of the seed models (3x3 stride 1 and 2, 4x4 and 5x5 stride 2) fixed at compile time, so the tap loops
  unroll and a thread's loads are in flight together; v7 (production) is v6 with its three divisions by
  launch-constant values (pixels per phase row, phase rows, channels) as a multiply-high and a shift
  (tinygan.kernels.fastdiv). v7's prediction (sixth session, from ncu of v6 in the DCGAN step on an H200:
  compute throughput 79%, DRAM 12-34% of peak, three runtime ``div.s32`` per pixel in the PTX): 1.5x v6 on the
  large layers, where the issue rate binds. Outcome (seventh session, H200): 1.31-1.36x on the three largest,
  1.29x over all the DCGAN's shapes. v8 (production since the ninth session) gives a thread a whole sh x sw
  block of pixels, one of each phase, so the block's kh*kw taps are read once each with the index decoding,
  tap bounds and stores (one vector store a block row) shared. Prediction (ninth session): about 2.7x fewer
  instructions a pixel at stride 2, so up to 1.5x where the issue rate binds. Outcome (H200): 1.09-1.28x on
  the stride-2 layers, 184 against 207 us (float32) and 167 against 194 us (``col2im_bf16``, the bf16 step's
  bfloat16 dcols) over the DCGAN's shapes; slower on the stride-1 layer (0.88-0.91x) and on the 3-channel
  5x5 one at float32 (0.81x: a quarter of the threads on a small plane). ncu of v8 in the bf16 step (ninth
  session): the largest launch at 72% of the SMs' throughput and 32% of DRAM's, its warps waiting on their
  loads (L1TEX scoreboard) for 61% of the cycles between instructions: the pipes and the loads' latency bind,
  not the bytes.
- ``cns_to_ncs`` and ``ncs_to_cns`` (the layout changes around every GEMM, with the bias and activation
  epilogue, and the activation's gradient): v1 one thread per element with two divisions each; v2
  (production until the eighth session) the divisions as multiply-high and shift, as col2im v7: measured
  1.16-1.33x and 1.08-1.17x; v3 (production) v2 with 4 values a thread (the largest of 4, 2, 1 dividing H*W),
  one decode and one vector load and store for the 4. Prediction (eighth session: v2 moves 45% of the copy
  bandwidth in the step, 131 + 97 us at tf32): 1.5x v2 on the large layers.
- ``channel_sum`` (every bias gradient): v1 one block per channel; v2 (production) many blocks per
  channel, then one block per channel sums the partials.
- ``adam`` (a network's every weight in one launch, the step count on the device): see
  ``bench/dev/adam_versions.py`` (v1 grid-stride over each tensor, v2 chunks a block each, v3 production:
  v2 on a capped grid).
- ``batchnorm_forward`` and ``batchnorm_backward`` (the generator's three BatchNorm2d layers): v1 one
  block per channel does everything in one launch; v2 (production, for channels of more than 4,096
  values) reduces chunks of a channel in many blocks, combines them per channel in a fixed order, then
  applies the result with one thread per value: three launches that fill the GPU.

Shapes are those of the DCGAN training step: the discriminator's convolutions at its 2N = 256 images,
the generator's transposed convolutions at N = 128 (their im2col/col2im run over the layer's output).

    python -m bench.dev.kernel_versions                      # every op, every shape, float32
    python -m bench.dev.kernel_versions --op col2im --out col2im.md

Validation: each version's output against tinygan's reference kernel run in float64 on the same inputs,
error = max|got - want| / max|want|, after the output's memory was filled with NaN (so an element a
version forgets to write fails). A version that disagrees is reported as wrong and not timed.
Timing: ``--reps`` calls (inputs rotating among several copies when one would fit in the L2 cache)
are captured as one CUDA graph, as the training step is, and its replays are timed with CUDA events:
device time, without the host's launch and allocation overhead. Median over ``--rounds`` replays, in
two passes (every version, then every version again); the spread between the passes is the noise
floor. Rates count each input read once and each output written once, against a large
device-to-device copy measured in the same run.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import functools
import math
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tinygan.kernels.bf16 import from_bf16, to_bf16

from bench.harness import gpu_missing

try:
    import cupy
except ImportError:  # --help works anywhere; main() says why nothing runs
    cupy = None

HERE = Path(__file__).resolve().parent
L2_BYTES = 64 * 2**20  # more than the L2 of current cards (H100: 50 MiB)


@dataclasses.dataclass(frozen=True)
class Conv:
    """One im2col/col2im geometry: the image side ``x_shape`` with kernel, stride and padding."""

    name: str
    x_shape: tuple[int, int, int, int]
    k: int
    s: int
    p: int

    def out_hw(self) -> tuple[int, int]:
        h, w = self.x_shape[2:]
        return (h + 2 * self.p - self.k) // self.s + 1, (w + 2 * self.p - self.k) // self.s + 1

    def pairs(self) -> tuple[tuple[int, int], ...]:
        """(kernel, stride, padding) as the (h, w) pairs every kernel takes."""
        return (self.k, self.k), (self.s, self.s), (self.p, self.p)

    def cols_shape(self) -> tuple[int, int]:
        n, c = self.x_shape[:2]
        ho, wo = self.out_hw()
        return c * self.k * self.k, n * ho * wo


DCGAN_CONVS = [
    Conv("D conv1 3->64, 32x32, k3 s1 p1", (256, 3, 32, 32), 3, 1, 1),
    Conv("D conv2 64->128, 32->16, k3 s2 p1", (256, 64, 32, 32), 3, 2, 1),
    Conv("D conv3 128->128, 16->8, k3 s2 p1", (256, 128, 16, 16), 3, 2, 1),
    Conv("D conv4 128->32, 8->4, k3 s2 p1", (256, 128, 8, 8), 3, 2, 1),
    Conv("G convT1 128->128, 4->8, k5 s2 p2", (128, 128, 8, 8), 5, 2, 2),
    Conv("G convT2 128->64, 8->16, k5 s2 p2", (128, 64, 16, 16), 5, 2, 2),
    Conv("G convT3 64->3, 16->32, k5 s2 p2", (128, 3, 32, 32), 5, 2, 2),
]

# The outputs whose bias gradients the step sums: D's convolutions at 2N, G's transposed ones at N.
DCGAN_BIAS_GRADS = [
    ("D conv1", (256, 64, 32, 32)),
    ("D conv2", (256, 128, 16, 16)),
    ("D conv3", (256, 128, 8, 8)),
    ("D conv4", (256, 32, 4, 4)),
    ("G convT1", (128, 128, 8, 8)),
    ("G convT2", (128, 64, 16, 16)),
    ("G convT3", (128, 3, 32, 32)),
]


# The generator's BatchNorm2d inputs (the discriminator has none).
DCGAN_BATCHNORMS = [
    ("G bn0 after Dense", (128, 128, 4, 4)),
    ("G bn1 after convT1", (128, 128, 8, 8)),
    ("G bn2 after convT2", (128, 64, 16, 16)),
]
BN_EPS = 1e-5


@dataclasses.dataclass(frozen=True)
class Version:
    name: str
    what: str
    fn: Callable[..., Any]  # (inputs...) -> output CuPy array


@dataclasses.dataclass
class Op:
    """An op: its versions (oldest first; the one named "production" is what kernels/gpu runs, and versions after
    it are candidates not yet promoted), its cases and how to check them."""

    name: str
    versions: list[Version]
    cases: list[tuple[str, Callable[[np.random.Generator], tuple], Callable[[tuple], np.ndarray], int]]
    # each case: (label, make(rng) -> host inputs, reference(the inputs in float64) -> array, bytes moved)


_DEV_MODULES: dict[str, Any] = {}


def dev_module(filename: str, templates: tuple[str, ...], production: tuple[str, ...] = ()) -> Any:
    """``bench/dev/<filename>`` compiled after production's _common.cu and the production .cu files named in
    ``production`` (whose device functions its versions call), once per process."""
    module = _DEV_MODULES.get(filename)
    if module is None:
        from tinygan.kernels.gpu import _common

        class DevModule(_common.CudaModule):
            def source(self) -> str:
                gpu = Path(_common.__file__).parent
                parts = [gpu / "_common.cu", *(gpu / name for name in production), HERE / self.filename]
                return "\n".join(part.read_text() for part in parts)

        module = _DEV_MODULES[filename] = DevModule(filename, templates=templates)
    return module


def _dev_module() -> Any:
    """bench/dev/conv_versions.cu compiled with the production kernels' shared helpers."""
    return dev_module(
        "conv_versions.cu",
        (
            "im2col_v1",
            "col2im_v1",
            "col2im_v2",
            "col2im_v3",
            "col2im_v4",
            "col2im_v5",
            "col2im_v6",
            "col2im_v7",
            "col2im_v7_bf16",
            "channel_sum_v1",
            "cns_to_ncs_v1",
            "ncs_to_cns_v1",
        ),
    )


def _geometry_args(x_shape: tuple[int, ...], k: Any, s: Any, p: Any) -> tuple:
    """The geometry and the trailing kernel arguments, as production's conv2d kernels take them."""
    from tinygan.kernels.gpu.conv2d import geometry

    g = geometry(x_shape, k, s, p, "dev")
    return g, g.kernel_args()


def im2col_v2(x: Any, k: Any, s: Any, p: Any) -> Any:
    """Production before the eighth session: one column a thread (production's kernel at vec = 1)."""
    from tinygan.kernels.gpu.conv2d import im2col_operand

    return im2col_operand(x, k, s, p, False, vec=1)


def im2col_v3(x: Any, k: Any, s: Any, p: Any) -> Any:
    """Production's kernel with 4 consecutive columns a thread at every stride (2 or 1 where N*Ho*Wo asks);
    production takes it at stride 1 only (the measured outcome, in the module docstring)."""
    from tinygan.kernels.gpu.conv2d import geometry, im2col_operand

    g = geometry(x.shape, k, s, p, "im2col_v3")
    vec = next(v for v in (4, 2, 1) if (g.n * g.ho * g.wo) % v == 0)
    return im2col_operand(x, k, s, p, False, vec=vec)


def im2col_bf16_vec(at_stride1: int | None, at_stride2: int | None) -> Callable[..., Any]:
    """Production's im2col writing bfloat16 cols (precision "bf16"), ``at_stride1`` columns a thread at stride 1
    and ``at_stride2`` at any other (None for both: production's rule), 2 or 1 where N*Ho*Wo asks."""

    def im2col_bf16(x: Any, k: Any, s: Any, p: Any) -> Any:
        from tinygan.kernels.gpu.conv2d import geometry, im2col_operand

        g = geometry(x.shape, k, s, p, "im2col_bf16")
        want = at_stride1 if g.sw == 1 else at_stride2
        v = None if want is None else next(v for v in (want, 2, 1) if (g.n * g.ho * g.wo) % v == 0)
        return im2col_operand(x, k, s, p, True, vec=v)

    im2col_bf16.__name__ = f"im2col_bf16_vec{at_stride1}_{at_stride2}"
    return im2col_bf16


def im2col_v1(x: Any, k: Any, s: Any, p: Any) -> Any:
    from tinygan.kernels.gpu._common import launch

    g, args = _geometry_args(x.shape, k, s, p)
    cols = cupy.empty((g.c * g.kh * g.kw, g.n * g.ho * g.wo), dtype=x.dtype)
    launch(_dev_module().get("im2col_v1", x.dtype), cols.size, (x, cols, *args))
    return cols


def _col2im_dev(kernel: str) -> Callable[..., Any]:
    def col2im(cols: Any, x_shape: tuple[int, ...], k: Any, s: Any, p: Any) -> Any:
        from tinygan.kernels.fastdiv import fast_div_args
        from tinygan.kernels.gpu._common import THREADS, grid_for, launch, narrow
        from tinygan.kernels.gpu.conv2d import COL2IM_BLOCKED, is_bf16

        g, args = _geometry_args(x_shape, k, s, p)
        x = cupy.empty(x_shape, dtype=np.float32 if is_bf16(cols) else cols.dtype)
        if kernel != "col2im_v1" and not narrow(cols, x):
            raise ValueError(f"{kernel} indexes with 32-bit ints: these arrays are too large for it")
        fn = _dev_module().get(kernel, x.dtype)
        if kernel.startswith("col2im_v7"):  # v4's threads, and fast_div's arguments
            if (g.kh, g.kw, g.sh, g.sw) not in COL2IM_BLOCKED:  # v7 and v8 share the general path
                from tinygan.kernels.gpu.conv2d import col2im as production

                return production(cols, x_shape, k, s, p)
            magic = fast_div_args(-(-g.w // g.sw), -(-g.h // g.sh), g.c)
            launch(fn, _phase_slots(g), (cols, x, *args, *magic))
        elif kernel == "col2im_v6":  # v4's threads (the phase-padded pixels)
            launch(fn, _phase_slots(g), (cols, x, *args))
        elif kernel == "col2im_v5":  # y: the (n, c, phase) planes; x: the pixels of one phase
            per_plane = -(-g.h // g.sh) * -(-g.w // g.sw)
            planes = g.n * g.c * g.sh * g.sw
            if planes and per_plane:
                fn((grid_for(per_plane)[0], min(planes, 65535)), (THREADS,), (cols, x, *args))
        else:
            launch(fn, _phase_slots(g) if kernel == "col2im_v4" else x.size, (cols, x, *args))
        return x

    col2im.__name__ = kernel
    return col2im


def _leaky(z: np.ndarray, slope: float) -> np.ndarray:
    return np.where(z > 0, z, z * slope)


def _n_c_s(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(N, C, S) of an (N, C, ...) shape, S the product of the rest."""
    return int(shape[0]), int(shape[1]), int(np.prod(shape[2:], dtype=np.int64))


def cns_to_ncs_v1(src: Any, shape: tuple[int, ...], bias: Any = None, slope: float | None = None) -> Any:
    from tinygan.kernels.gpu._common import idx, launch, narrow
    from tinygan.kernels.gpu.layout import act_args

    n, c, s = _n_c_s(shape)
    dst = cupy.empty(shape, dtype=src.dtype)
    if not narrow(src, dst):
        raise ValueError("cns_to_ncs_v1 indexes with 32-bit ints: these arrays are too large for it")
    has_bias = bias is not None
    fn = _dev_module().get("cns_to_ncs_v1", src.dtype)
    args = (src, dst, bias if has_bias else src, np.int32(has_bias), *act_args(src.dtype, slope))
    launch(fn, dst.size, (*args, idx(n), idx(c), idx(s)))
    return dst


def ncs_to_cns_v1(src: Any, gate: Any = None, slope: float | None = None) -> Any:
    from tinygan.kernels.gpu._common import idx, launch, narrow
    from tinygan.kernels.gpu.layout import act_args

    n, c, s = _n_c_s(src.shape)
    dst = cupy.empty((c, n * s), dtype=src.dtype)
    if not narrow(src, dst):
        raise ValueError("ncs_to_cns_v1 indexes with 32-bit ints: these arrays are too large for it")
    fn = _dev_module().get("ncs_to_cns_v1", src.dtype)
    args = (src, dst, gate if slope is not None else src, *act_args(src.dtype, slope))
    launch(fn, dst.size, (*args, idx(n), idx(c), idx(s)))
    return dst


def _phase_slots(g: Any) -> int:
    """Threads of col2im v4: every (n, c, phase) plane padded to ceil(H/sh) x ceil(W/sw) pixels."""
    return g.n * g.c * g.sh * g.sw * -(-g.h // g.sh) * -(-g.w // g.sw)


def channel_sum_v1(x: Any) -> Any:
    from tinygan.kernels.gpu._common import THREADS

    n, c = x.shape[:2]
    s = int(np.prod(x.shape[2:]))
    out = cupy.empty(c, dtype=x.dtype)
    _dev_module().get("channel_sum_v1", x.dtype)((c,), (THREADS,), (x, out, np.int64(n), np.int64(c), np.int64(s)))
    return out


def bn_forward_v1(x: Any, gamma: Any, beta: Any, eps: float) -> tuple:
    """BatchNorm forward with one block per channel for every shape (production keeps this kernel
    for channels of at most BN_CHUNK values)."""
    from tinygan.kernels.gpu import batchnorm
    from tinygan.kernels.gpu._common import THREADS
    from tinygan.kernels.gpu.layout import act_args

    n, c = x.shape[:2]
    s = int(np.prod(x.shape[2:]))
    y, xhat = cupy.empty_like(x), cupy.empty_like(x)
    mean, var, inv_std = (cupy.empty(c, dtype=x.dtype) for _ in range(3))
    no_act = act_args(x.dtype, None)
    args = (
        x,
        gamma,
        beta,
        y,
        xhat,
        mean,
        var,
        inv_std,
        np.int64(n),
        np.int64(c),
        np.int64(s),
        np.float64(eps),
        *no_act,
    )
    batchnorm._MOD.get_for("batchnorm_forward", x.dtype, x)((c,), (THREADS,), args)
    return y, mean, var, xhat, inv_std


def bn_backward_v1(dy: Any, xhat: Any, inv_std: Any, gamma: Any) -> tuple:
    from tinygan.kernels.gpu import batchnorm
    from tinygan.kernels.gpu._common import THREADS
    from tinygan.kernels.gpu.layout import act_args

    n, c = dy.shape[:2]
    s = int(np.prod(dy.shape[2:]))
    dx = cupy.empty_like(dy)
    dgamma, dbeta = cupy.empty(c, dtype=dy.dtype), cupy.empty(c, dtype=dy.dtype)
    no_gate = (dy, *act_args(dy.dtype, None))
    args = (dy, xhat, *no_gate, inv_std, gamma, dx, dgamma, dbeta, np.int64(n), np.int64(c), np.int64(s))
    batchnorm._MOD.get_for("batchnorm_backward", dy.dtype, dy)((c,), (THREADS,), args)
    return dx, dgamma, dbeta


def ops(
    dtype: Any = np.float32,
    convs: list[Conv] | None = None,
    bias_grads: list | None = None,
    batchnorms: list | None = None,
    adam_networks: list | None = None,
) -> list[Op]:
    """The ops, their versions and cases (``convs``, ``bias_grads``, ``batchnorms``, ``adam_networks``: other
    shapes than the DCGAN's, and for Adam the seed networks' tensors)."""
    import tinygan.kernels.gpu as K
    from tinygan.kernels import reference as R
    from tinygan.kernels.gpu.layout import channel_sum, cns_to_ncs, ncs_to_cns

    from bench.dev import adam_versions

    convs = DCGAN_CONVS if convs is None else convs
    bias_grads = DCGAN_BIAS_GRADS if bias_grads is None else bias_grads
    batchnorms = DCGAN_BATCHNORMS if batchnorms is None else batchnorms
    size = np.dtype(dtype).itemsize

    def normal(rng: np.random.Generator, shape: tuple) -> np.ndarray:
        return rng.standard_normal(shape).astype(dtype)

    im2col_cases, im2col_bf16_cases, col2im_cases, col2im_bf16_cases, sum_cases = [], [], [], [], []
    for cv in convs:
        x_elems, cols_elems = int(np.prod(cv.x_shape)), int(np.prod(cv.cols_shape()))
        im2col_cases.append(
            (
                cv.name,
                lambda rng, cv=cv: (normal(rng, cv.x_shape), *cv.pairs()),
                lambda a: R.im2col(a[0], a[1], a[2], a[3]),
                (x_elems + cols_elems) * size,
            )
        )
        col2im_cases.append(
            (
                cv.name,
                lambda rng, cv=cv: (normal(rng, cv.cols_shape()), cv.x_shape, *cv.pairs()),
                lambda a: R.col2im(a[0], a[1], a[2], a[3], a[4]),
                (x_elems + cols_elems) * size,
            )
        )
        im2col_bf16_cases.append(
            (
                cv.name,
                lambda rng, cv=cv: (normal(rng, cv.x_shape).astype(np.float32), *cv.pairs()),
                lambda a: to_bf16(R.im2col(a[0], a[1], a[2], a[3])).astype(np.float64),
                x_elems * 4 + cols_elems * 2,
            )
        )
        col2im_bf16_cases.append(
            (
                cv.name,
                lambda rng, cv=cv: (to_bf16(normal(rng, cv.cols_shape())), cv.x_shape, *cv.pairs()),
                lambda a: R.col2im(from_bf16(a[0]).astype(np.float64), a[1], a[2], a[3], a[4]),
                x_elems * 4 + cols_elems * 2,
            )
        )
    for name, shape in bias_grads:
        sum_cases.append(
            (
                f"{name} bias gradient {'x'.join(map(str, shape))}",
                lambda rng, shape=shape: (normal(rng, shape),),
                lambda a: a[0].sum(axis=(0, 2, 3)),
                (int(np.prod(shape)) + shape[1]) * size,
            )
        )
    # The layout changes around every GEMM: the forward's (C, N*S) product to NCHW with bias and LeakyReLU 0.2,
    # the backward's upstream gradient to (C, N*S) through LeakyReLU's gate; on the conv outputs (bias_grads).
    to_ncs_cases, to_cns_cases = [], []
    for name, shape in bias_grads:
        n_, c_, s_ = _n_c_s(shape)
        elems = n_ * c_ * s_
        label = f"{name} output {'x'.join(map(str, shape))}"
        to_ncs_cases.append(
            (
                label,
                lambda rng, shape=shape, c_=c_, m=elems // c_: (normal(rng, (c_, m)), shape, normal(rng, (c_,)), 0.2),
                lambda a: _leaky(
                    a[0].reshape(a[1][1], a[1][0], -1).transpose(1, 0, 2).reshape(a[1])
                    + a[2].reshape(1, -1, *([1] * (len(a[1]) - 2))),
                    a[3],
                ),
                (2 * elems + c_) * size,
            )
        )
        to_cns_cases.append(
            (
                label,
                lambda rng, shape=shape: (normal(rng, shape), normal(rng, shape), 0.2),
                lambda a: (
                    np.where(a[1] > 0, a[0], a[0] * a[2])
                    .reshape(a[0].shape[0], a[0].shape[1], -1)
                    .transpose(1, 0, 2)
                    .reshape(a[0].shape[1], -1)
                ),
                3 * elems * size,
            )
        )
    bn_forward_cases, bn_backward_cases = [], []
    for name, shape in batchnorms:
        c, elems = shape[1], int(np.prod(shape))
        label = f"{name} {'x'.join(map(str, shape))}"
        bn_forward_cases.append(
            (
                label,
                lambda rng, shape=shape: (
                    normal(rng, shape),
                    normal(rng, shape[1:2]),
                    normal(rng, shape[1:2]),
                    BN_EPS,
                ),
                lambda a: R.batchnorm_forward(*a),
                (3 * elems + 5 * c) * size,
            )
        )
        bn_backward_cases.append(
            (
                label,
                lambda rng, shape=shape: (
                    normal(rng, shape),
                    normal(rng, shape),
                    (rng.random(shape[1]) + 0.5).astype(dtype),
                    normal(rng, shape[1:2]),
                ),
                lambda a: R.batchnorm_backward(*a),
                (3 * elems + 4 * c) * size,
            )
        )
    every = [
        Op(
            "im2col",
            [
                Version("v1", "one thread per element of cols, 64-bit index math", im2col_v1),
                Version("v2", "32-bit index math, a column decoded once per 16 rows", im2col_v2),
                Version("v3", "v2 with 4 consecutive columns a thread, one vector store a row", im2col_v3),
                Version("v4", "production: v3 at stride 1, v2 at stride 2 (as measured)", K.im2col),
            ],
            im2col_cases,
        ),
        Op(
            "im2col_bf16",
            [
                Version("v4", "4 columns a thread at stride 1, 1 at stride 2 (as float32)", im2col_bf16_vec(4, 1)),
                Version("v5", "2 columns a thread at every stride (one 4-byte store a row)", im2col_bf16_vec(2, 2)),
                Version("v6", "4 columns a thread at every stride (one 8-byte store a row)", im2col_bf16_vec(4, 4)),
                Version("v7", "production: 4 columns a thread at stride 1, 2 at stride 2", im2col_bf16_vec(None, None)),
            ],
            im2col_bf16_cases,
        ),
        Op(
            "col2im",
            [
                Version("v1", "gather over all kh*kw taps, each tested, 64-bit index math", _col2im_dev("col2im_v1")),
                Version("v2", "v1 with 32-bit index math", _col2im_dev("col2im_v2")),
                Version("v3", "only the taps that reach the pixel, 32-bit", _col2im_dev("col2im_v3")),
                Version(
                    "v4", "v3 with pixels numbered phase by phase: a warp's taps in lockstep", _col2im_dev("col2im_v4")
                ),
                Version("v5", "v4 on a 2-D grid: one division per pixel", _col2im_dev("col2im_v5")),
                Version("v6", "v4 with the kernel and stride fixed at compile time", _col2im_dev("col2im_v6")),
                Version(
                    "v7", "v6 with its three runtime divisions as multiply-high and shift", _col2im_dev("col2im_v7")
                ),
                Version(
                    "v8", "production: a thread a block of sh x sw pixels (one per phase), vector stores", K.col2im
                ),
            ],
            col2im_cases,
        ),
        Op(
            "col2im_bf16",
            [
                Version(
                    "v7",
                    "v7 on bfloat16 cols (precision bf16's data gradient), summed in float32",
                    _col2im_dev("col2im_v7_bf16"),
                ),
                Version("v8", "production: v8 on bfloat16 cols", K.col2im),
            ],
            col2im_bf16_cases,
        ),
        Op(
            "cns_to_ncs",
            [
                Version("v1", "one thread per element, two divisions each", cns_to_ncs_v1),
                Version("v2", "v1, its divisions as multiply-high and shift", functools.partial(cns_to_ncs, vec=1)),
                Version("v3", "production: v2 with 4 values a thread, one vector load and store", cns_to_ncs),
            ],
            to_ncs_cases,
        ),
        Op(
            "ncs_to_cns",
            [
                Version("v1", "one thread per element, two divisions each", ncs_to_cns_v1),
                Version("v2", "v1, its divisions as multiply-high and shift", functools.partial(ncs_to_cns, vec=1)),
                Version("v3", "production: v2 with 4 values a thread, one vector load and store", ncs_to_cns),
            ],
            to_cns_cases,
        ),
        Op(
            "channel_sum",
            [
                Version("v1", "one block per channel", channel_sum_v1),
                Version("v2", "production: many blocks per channel, then one per channel", channel_sum),
            ],
            sum_cases,
        ),
        Op(
            "batchnorm_forward",
            [
                Version("v1", "one block per channel: statistics and normalization in one launch", bn_forward_v1),
                Version(
                    "v2",
                    "production: chunks over many blocks, a per-channel finish, one thread a value",
                    K.batchnorm_forward,
                ),
            ],
            bn_forward_cases,
        ),
        Op(
            "batchnorm_backward",
            [
                Version("v1", "one block per channel", bn_backward_v1),
                Version(
                    "v2",
                    "production: chunks over many blocks, a per-channel finish, one thread a value",
                    K.batchnorm_backward,
                ),
            ],
            bn_backward_cases,
        ),
        Op(
            "adam",
            [
                Version("v1", "one grid strides over each tensor in turn", adam_versions.adam_v1),
                Version("v2", "a block a chunk of 1,024, four loads a thread in flight", adam_versions.adam_v2),
                Version(
                    "v3",
                    "production: v2's kernel on a grid of 4 blocks per SM looping over the chunks",
                    adam_versions.adam_v3,
                ),
            ],
            adam_versions.cases(dtype, adam_networks),
        ),
    ]
    # bfloat16 cols exist at precision "bf16" only, over float32 images.
    return [op for op in every if op.name not in ("im2col_bf16", "col2im_bf16") or np.dtype(dtype) == np.float32]


def to_device(args: tuple) -> tuple:

    return tuple(cupy.asarray(a) if isinstance(a, np.ndarray) else a for a in args)


def poison(nbytes: int) -> None:
    """Fill free blocks of CuPy's pool of this size with NaN bytes: an output allocated next starts as NaN."""

    blocks = [cupy.full(max(nbytes, 1), 0xFF, dtype=cupy.uint8) for _ in range(4)]
    cupy.cuda.Device().synchronize()
    del blocks


def validate(version: Version, host_args: tuple, want: Any, tolerance: float) -> tuple[bool, float]:
    """Run ``version`` on ``host_args`` (outputs allocated over NaN) and compare each output with
    ``want`` (an array or a tuple of arrays, float64): the largest relative error of any output."""
    wants = want if isinstance(want, tuple) else (want,)
    poison(max(w.size for w in wants) * max(np.dtype(host_args[0].dtype).itemsize, 4))
    result = version.fn(*to_device(host_args))
    gots = result if isinstance(result, tuple) else (result,)
    if len(gots) != len(wants):
        return False, math.inf
    error = 0.0
    for got, w in zip(gots, wants):
        got = cupy.asnumpy(got).astype(np.float64)
        if got.shape != w.shape or not np.isfinite(got).all():
            return False, math.inf
        error = max(error, float(np.abs(got - w).max() / max(np.abs(w).max(), 1e-30)))
    return error <= tolerance, error


def time_version(version: Version, arg_sets: list[tuple], rounds: int, reps: int) -> list[float]:
    """Microseconds of device time per call, one figure per round: ``reps`` calls (rotating over
    ``arg_sets``) captured as one CUDA graph, its replays timed with CUDA events. The graph leaves out
    the host's launch and allocation overhead, as the training step's graph does; what remains is the
    kernels and the gaps between them on the device."""
    stream = cupy.cuda.Stream(non_blocking=True)
    pool = cupy.cuda.MemoryPool()  # allocations made while capturing belong to the graph
    with stream:
        for args in arg_sets:
            version.fn(*args)  # warm-up: compilation, module load, multi-tensor pointer tables
        stream.synchronize()
        with cupy.cuda.using_allocator(pool.malloc):
            stream.begin_capture()
            try:
                for j in range(reps):
                    version.fn(*arg_sets[j % len(arg_sets)])
            finally:
                graph = stream.end_capture()
        graph.upload(stream)
        graph.launch(stream)
        start, end = cupy.cuda.Event(), cupy.cuda.Event()
        per_call = []
        for _ in range(rounds):
            start.record()
            graph.launch(stream)
            end.record()
            end.synchronize()
            per_call.append(cupy.cuda.get_elapsed_time(start, end) * 1e3 / reps)
    del graph
    pool.free_all_blocks()
    return per_call


def copy_bandwidth() -> float:
    """GB/s of a 1 GiB device-to-device copy (bytes read plus bytes written), best of 10."""

    src = cupy.ones(2**28, dtype=cupy.float32)
    dst = cupy.empty_like(src)
    start, end = cupy.cuda.Event(), cupy.cuda.Event()
    best = math.inf
    for _ in range(10):
        start.record()
        cupy.copyto(dst, src)
        end.record()
        end.synchronize()
        best = min(best, cupy.cuda.get_elapsed_time(start, end) / 1e3)
    del src, dst
    cupy.get_default_memory_pool().free_all_blocks()
    return 2 * 2**30 / best / 1e9


@dataclasses.dataclass
class Row:
    op: str
    case: str
    version: str
    what: str
    ok: bool
    error: float
    median_us: float = math.nan  # over both passes' rounds
    iqr_us: float = math.nan
    pass_medians: tuple[float, ...] = ()
    bytes: int = 0


def run(op_names: list[str] | None, dtype: Any, rounds: int, reps: int, tolerance: float, seed: int = 0) -> list[Row]:
    """Validate every version of every op on each case, then time the valid ones in two passes (all
    versions, then all again), so that the spread between passes shows what counts as noise."""
    rows = []
    rng = np.random.default_rng(seed)
    for op in ops(dtype):
        if op_names and op.name not in op_names:
            continue
        for label, make, reference, nbytes in op.cases:
            host = make(rng)
            want = reference(tuple(a.astype(np.float64) if isinstance(a, np.ndarray) else a for a in host))
            copies = max(1, min(8, math.ceil(L2_BYTES / max(nbytes, 1))))
            arg_sets = [to_device(host)] + [to_device(make(rng)) for _ in range(copies - 1)]
            case_rows = []
            for version in op.versions:
                ok, error = validate(version, host, want, tolerance)
                case_rows.append((version, Row(op.name, label, version.name, version.what, ok, error, bytes=nbytes)))
            times: dict[str, list[list[float]]] = {v.name: [] for v, _ in case_rows}
            for _ in range(2):
                for version, row in case_rows:
                    if row.ok:
                        times[version.name].append(time_version(version, arg_sets, rounds, reps))
            for version, row in case_rows:
                if row.ok:
                    every = [t for one_pass in times[version.name] for t in one_pass]
                    q = statistics.quantiles(every, n=4)
                    row.median_us, row.iqr_us = statistics.median(every), q[2] - q[0]
                    row.pass_medians = tuple(statistics.median(p) for p in times[version.name])
                rows.append(row)
                print(
                    f"  {op.name:12s} {label:38s} {version.name:3s} "
                    + (
                        f"{row.median_us:9.1f} us (passes {' / '.join(f'{m:.1f}' for m in row.pass_medians)})"
                        if row.ok
                        else f"WRONG (error {row.error:.2e})"
                    ),
                    flush=True,
                )
            del arg_sets
            cupy.get_default_memory_pool().free_all_blocks()
    return rows


def render(rows: list[Row], bandwidth: float, header: str) -> str:
    lines = [header, ""]
    for op in dict.fromkeys(r.op for r in rows):
        op_rows = [r for r in rows if r.op == op]
        versions = list(dict.fromkeys(r.version for r in op_rows))
        lines += [f"## {op}", ""]
        for v in versions:
            lines.append(f"- {v}: {next(r.what for r in op_rows if r.version == v)}")
        lines += [
            "",
            "| shape | version | median µs | IQR µs | passes µs | GB/s | % of copy | vs v1 | max rel. error |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        total = dict.fromkeys(versions, 0.0)
        for case in dict.fromkeys(r.case for r in op_rows):
            base = next((r for r in op_rows if r.case == case and r.version == versions[0]), None)
            for r in (r for r in op_rows if r.case == case):
                if not r.ok:
                    lines.append(f"| {case} | {r.version} | **wrong** | | | | | | {r.error:.1e} |")
                    continue
                rate = r.bytes / (r.median_us * 1e-6) / 1e9
                speedup = base.median_us / r.median_us if base is not None and base.ok else math.nan
                lines.append(
                    f"| {case} | {r.version} | {r.median_us:,.1f} | {r.iqr_us:,.1f} | "
                    f"{' / '.join(f'{m:,.1f}' for m in r.pass_medians)} | {rate:,.0f} | "
                    f"{100 * rate / bandwidth:.0f}% | {speedup:.2f}x | {r.error:.1e} |"
                )
                total[r.version] += r.median_us
        lines += ["", "Sum over the shapes: " + ", ".join(f"{v} {t:,.0f} µs" for v, t in total.items()), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1], formatter_class=_Formatter
    )
    parser.add_argument(
        "--op",
        action="append",
        choices=[
            "im2col",
            "im2col_bf16",
            "col2im",
            "col2im_bf16",
            "cns_to_ncs",
            "ncs_to_cns",
            "channel_sum",
            "batchnorm_forward",
            "batchnorm_backward",
            "adam",
        ],
        help="repeatable",
    )
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--rounds", type=int, default=15, help="timed rounds per version (default 15)")
    parser.add_argument("--reps", type=int, default=10, help="back-to-back calls per round (default 10)")
    parser.add_argument("--tolerance", type=float, default=1e-5)
    parser.add_argument("--out", type=Path, help="also write the table as Markdown here")
    args = parser.parse_args(argv)

    if gpu_missing("kernel_versions"):
        return 2

    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    card = props["name"].decode()
    bandwidth = copy_bandwidth()
    print(f"{card}: device-to-device copy {bandwidth:,.0f} GB/s", flush=True)
    rows = run(args.op, np.dtype(args.dtype), args.rounds, args.reps, args.tolerance)
    header = (
        f"# GPU kernel versions: {card}, {dt.date.today().isoformat()}\n\n"
        f"`python -m bench.dev.kernel_versions` ({args.dtype}, {args.rounds} rounds of {args.reps} calls), "
        f"CuPy {cupy.__version__}, CUDA runtime {cupy.cuda.runtime.runtimeGetVersion()}. "
        f"Copy bandwidth measured here: {bandwidth:,.0f} GB/s (read + write). "
        "Every version was checked against the float64 reference before it was timed (see the module docstring)."
    )
    text = render(rows, bandwidth, header)
    print("\n" + text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0 if all(r.ok for r in rows) else 1


class _Formatter(argparse.RawDescriptionHelpFormatter):
    pass


if __name__ == "__main__":
    sys.exit(main())
