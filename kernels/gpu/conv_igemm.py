"""Implicit-GEMM convolution kernels (conv_igemm.cu): the three passes of Conv2d without an im2col buffer.

With x (N, C, H, W), W (Cout, C, kh, kw) and y (N, Cout, Ho, Wo):

    fprop  y[n, o, p]  = sum_{c,i,j} W[o, c, i, j] x[n, c, p*s - pad + (i, j)] + b[o]
    dgrad  dx[n, c, q] = sum_{o,i,j} W[o, c, i, j] dy[n, o, (q + pad - (i, j)) / s]   (where s divides it)
    wgrad  dW[o, c, i, j] = sum_{n,p} dy[n, o, p] x[n, c, p*s - pad + (i, j)]      db[o] = sum_{n,p} dy[n, o, p]

each one matrix product whose operand tiles are gathered from the NCHW tensors into shared memory.
ConvTranspose2d's passes are the same kernels with the roles swapped (conv_transpose2d.py).

The precision setting (tinygan.backend.set_precision) picks the product: ``"fp32"`` SIMT FP32 FMAs
(``FP32_KERNEL``), ``"tf32"`` and ``"bf16"`` ``mma.sync`` tensor-core products with operands rounded to TF32
or BF16; FP32 accumulation in all. Inputs and outputs are float32 arrays.

Which ops run here rather than im2col + cuBLAS is ``ROUTE`` (empty: slower on the DCGAN's large layers, see
bench/results/gpu-kernel-versions-2026-12-02.md). The index math is replayed on the CPU by
bench/dev/igemm_emulate.py; the versions are timed by bench/dev/igemm_versions.py.
"""

from __future__ import annotations

from typing import Any

import cupy
import numpy as np

from ._common import CudaModule

FPROP, DGRAD, WGRAD = 0, 1, 2
SIMT, TF32, BF16, X3TF32 = 0, 1, 2, 3
# Tile configurations of conv_igemm.cu (IgCfg): (BM, BN, BK, threads). 0 is the first version (64 x 64,
# the only one with the SIMT product), 1 the 128 x 128 tiles, 2 the 64 x 128 tiles for M <= 64.
# 3 and 4 are 1 and 2 with the tiles copied by cp.async into a 3- or 4-deep ring of shared-memory buffers.
CFGS = {
    0: (64, 64, 32, 128),
    1: (128, 128, 16, 256),
    2: (64, 128, 16, 128),
    3: (128, 128, 16, 256),
    4: (64, 128, 16, 128),
}
AUTO = -1  # pick 1 or 2 by the GEMM's M
AUTO_PIPE = -2  # pick 3 or 4 by the GEMM's M
# The tiles the ops of tinygan.kernels.gpu use (measured: bench/results/gpu-kernel-versions-2026-12-02.md).
DEFAULT_CFG = AUTO

# The product each precision runs. "fp32" takes the SIMT kernel: the split-TF32 one measured up to 3e-5
# relative error on the DCGAN's long weight-gradient sums (tensor-core accumulation), above FP32's 1e-5.
FP32_KERNEL = SIMT
PRECISION_KERNEL = {"fp32": FP32_KERNEL, "tf32": TF32, "bf16": BF16}

# Which ops take the implicit-GEMM kernels at each precision, and from how many output rows M of the GEMM
# (output channels; input channels for the data gradients) on; everything else runs im2col / col2im
# around cuBLAS at the same precision. Chosen from the measurements in
# bench/results/gpu-kernel-versions-2026-12-02.md.
OPS = (
    "conv2d_forward",
    "conv2d_backward_data",
    "conv2d_backward_weight",
    "conv_transpose2d_forward",
    "conv_transpose2d_backward_data",
    "conv_transpose2d_backward_weight",
)
ROUTE: dict[str, dict[str, int]] = {"fp32": {}, "tf32": {}, "bf16": {}}


def use_implicit(op: str, m: int, *arrays: cupy.ndarray) -> bool:
    """Whether ``op`` (one of OPS) with a GEMM of ``m`` rows runs on the implicit-GEMM kernels at the
    current precision: float32 arrays below 2**31 elements, and an entry in ROUTE."""
    from tinygan.backend import get_precision

    least = ROUTE[get_precision()].get(op)
    return least is not None and m >= least and supports(*arrays)


INSTANCES = (
    [(0, p) for p in (SIMT, TF32, BF16, X3TF32)]
    + [(c, p) for c in (1, 2) for p in (TF32, BF16, X3TF32)]
    + [(c, p) for c in (3, 4) for p in (TF32, BF16)]
)
_MOD = CudaModule(
    "conv_igemm.cu",
    plain=tuple(f"conv_igemm<{c}, {m}, {p}>" for c, p in INSTANCES for m in (FPROP, DGRAD, WGRAD))
    + ("ig_splitk_reduce",),
    min_cc=80,  # mma.sync on TF32 / BF16 and cp.async
)


def _cfg(cfg: int | None, prec: int, m: int) -> int:
    if prec == SIMT:
        return 0
    cfg = DEFAULT_CFG if cfg is None else cfg
    if cfg == AUTO:
        return 2 if m <= 64 else 1
    if cfg == AUTO_PIPE:
        return 4 if m <= 64 else 3
    return cfg


def _kernel(cfg: int, mode: int, prec: int) -> Any:
    return _MOD.get(f"conv_igemm<{cfg}, {mode}, {prec}>")


# Blocks to aim for when splitting the weight gradient's long K: a few waves of the card's SMs.
_TARGET_BLOCKS = 2 * 132
_MIN_K_PER_SPLIT = 256


def supports(*arrays: cupy.ndarray) -> bool:
    """Whether these arrays can take the implicit-GEMM kernels: float32, every offset within an int."""
    return all(a.dtype == np.float32 and a.size < 2**31 for a in arrays)


def kernel_for(precision: str) -> int:
    try:
        return PRECISION_KERNEL[precision]
    except KeyError:
        raise ValueError(f"precision must be one of {tuple(PRECISION_KERNEL)}, got {precision!r}") from None


def _geom_args(n, c, h, w, cout, kh, kw, sh, sw, ph, pw, ho, wo) -> tuple:
    return tuple(np.int32(v) for v in (n, c, h, w, cout, kh, kw, sh, sw, ph, pw, ho, wo))


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _null() -> Any:
    return np.uintp(0)


def _launch(mode: int, prec: int, cfg: int | None, grid_n: int, m: int, z: int, args: tuple) -> None:
    cfg = _cfg(cfg, prec, m)
    bm, bn, _, threads = CFGS[cfg]
    _kernel(cfg, mode, prec)((_cdiv(grid_n, bn), _cdiv(m, bm), z), (threads,), args)


def fprop(
    x: cupy.ndarray,
    W: cupy.ndarray,
    bias: cupy.ndarray | None,
    stride,
    padding,
    out_hw,
    prec: int,
    cfg: int | None = None,
) -> cupy.ndarray:
    """y = conv2d(x, W) + bias for contiguous float32 x (N, C, H, W) and W (Cout, C, kh, kw)."""
    n, c, h, w = x.shape
    cout, _, kh, kw = W.shape
    (sh, sw), (ph, pw), (ho, wo) = stride, padding, out_hw
    y = cupy.empty((n, cout, ho, wo), dtype=np.float32)
    if y.size:
        geom = _geom_args(n, c, h, w, cout, kh, kw, sh, sw, ph, pw, ho, wo)
        b = bias if bias is not None else _null()
        _launch(FPROP, prec, cfg, n * ho * wo, cout, 1, (W, x, y, b, _null(), *geom, np.int32(0)))
    return y


def dgrad(
    dy: cupy.ndarray,
    W: cupy.ndarray,
    x_shape,
    stride,
    padding,
    bias: cupy.ndarray | None,
    prec: int,
    cfg: int | None = None,
) -> cupy.ndarray:
    """dx of conv2d (plus ``bias[c]``: ConvTranspose2d's forward) for dy (N, Cout, Ho, Wo), W (Cout, C, kh, kw)."""
    n, c, h, w = (int(d) for d in x_shape)
    _, cout, ho, wo = dy.shape
    _, _, kh, kw = W.shape
    (sh, sw), (ph, pw) = stride, padding
    dx = cupy.empty((n, c, h, w), dtype=np.float32)
    if dx.size:
        # One grid layer per phase (h mod sh, w mod sw), each over ceil(H/sh) x ceil(W/sw) pixels.
        geom = _geom_args(n, c, h, w, cout, kh, kw, sh, sw, ph, pw, ho, wo)
        b = bias if bias is not None else _null()
        pixels = n * _cdiv(h, sh) * _cdiv(w, sw)
        _launch(DGRAD, prec, cfg, pixels, c, sh * sw, (W, dy, dx, b, _null(), *geom, np.int32(0)))
    return dx


def wgrad(
    dy: cupy.ndarray, x: cupy.ndarray, kernel, stride, padding, with_bias: bool, prec: int, cfg: int | None = None
) -> tuple[cupy.ndarray, cupy.ndarray | None]:
    """(dW, db) of conv2d for dy (N, Cout, Ho, Wo) and x (N, C, H, W); db (the row sums of dy) only when asked."""
    n, c, h, w = x.shape
    _, cout, ho, wo = dy.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    ng, k_total = c * kh * kw, n * ho * wo
    bm, bn, bk, _ = CFGS[_cfg(cfg, prec, cout)]
    tiles = _cdiv(ng, bn) * _cdiv(cout, bm)
    # Split K so the grid fills the card, each split at least _MIN_K_PER_SPLIT deep.
    splits = max(1, min(_cdiv(_TARGET_BLOCKS, tiles), _cdiv(k_total, _MIN_K_PER_SPLIT)))
    k_per_split = _cdiv(_cdiv(k_total, splits), bk) * bk
    splits = max(1, _cdiv(k_total, k_per_split))
    dW = cupy.empty((cout, c, kh, kw), dtype=np.float32)
    db = cupy.empty(cout, dtype=np.float32) if with_bias else None
    if k_total == 0 or dW.size == 0:
        dW.fill(0)
        if db is not None:
            db.fill(0)
        return dW, db
    part = dW if splits == 1 else cupy.empty((splits, cout, ng), dtype=np.float32)
    pbias = db if (splits == 1 or db is None) else cupy.empty((splits, cout), dtype=np.float32)
    geom = _geom_args(n, c, h, w, cout, kh, kw, sh, sw, ph, pw, ho, wo)
    pb = pbias if pbias is not None else _null()
    _launch(WGRAD, prec, cfg, ng, cout, splits, (dy, x, part, _null(), pb, *geom, np.int32(k_per_split)))
    if splits > 1:
        # The partial sums of the splits, added in a fixed order: the same bits on every run.
        reduce = _MOD.get("ig_splitk_reduce")
        count = cout * ng
        reduce((min(4096, _cdiv(count, 256)),), (256,), (part, dW, np.int32(count), np.int32(splits)))
        if db is not None:
            reduce((max(1, _cdiv(cout, 256)),), (256,), (pbias, db, np.int32(cout), np.int32(splits)))
    return dW, db
