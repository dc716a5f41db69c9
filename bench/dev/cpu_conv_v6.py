"""Version 6 of the CPU convolutions, tried and not adopted: every strided fold (ConvTranspose2d's forward,
Conv2d's input gradient) phase by phase, without col2im.

Output pixel (ry + sh a, rx + sw b) of a fold receives only the kernel taps i = (ry + ph) mod sh, + sh, ...
and j likewise, so each of the sh sw output phases is a dense stride-1 convolution of the small side with those
taps: an im2col of contiguous channels-last runs and one sgemm per phase and tile, the result copied into its
interleaved place. No scatter, no column entry added onto another, no work on zeros. Everything else is
production's (``kernels/cpu/conv.py``, v5); ``conv2d_backward_data`` and ``conv_transpose2d_forward`` here take
the phase path when the folded side is channels-last.

Measured in ``bench/results/cpu-conv-versions-2026-12-02.md`` (03:00 session): slower than v5's GEMM + col2im
on the discriminator's input gradients (D2 204 vs 169 ms of one core: the phases' patches copy twice the values
that v5's GEMM reads, and a (pixels x 128 taps) @ (., 64) product runs at 79 GFLOP/s against v5's 86) and no
faster on the generator's forward passes (G2 55 vs 43 ms; the GEMMs ran faster, the copies ate it).

    python -m bench.dev.cpu_conv_versions --versions v5 v6 --passes fwd data --clock cpu
"""

# ruff: noqa: F403, F405
from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np
from numba import njit
from tinygan.kernels.cpu import conv as production
from tinygan.kernels.cpu.conv import *
from tinygan.kernels.cpu.conv import (
    _bias,
    _check_weight,
    _from_padded_nhwc,
    _geometry,
    _im2col_nhwc,
    _images_per_tile,
    _nhwc,
    _Scratch,
    _to_padded_nhwc,
)
from tinygan.kernels.cpu.tiles import run_tiles
from tinygan.kernels.reference.conv_geometry import conv_transpose2d_output_shape

TILE_BYTES = production.TILE_BYTES


@njit(cache=False, nogil=True)
def _interleave_phase(yp, acc, ry, rx, sh, sw):  # pragma: no cover - compiled
    """acc[t, ry + sh a, rx + sw b, :] = yp[t, a, b, :] for yp (nb, Ay, Ax, C): one output phase in its place."""
    nb, Ay, Ax, C = yp.shape
    for t in range(nb):
        for a in range(Ay):
            for b in range(Ax):
                src = yp[t, a, b]
                dst = acc[t, ry + sh * a, rx + sw * b]
                for c in range(C):
                    dst[c] = src[c]


class _Phase(NamedTuple):
    """One output phase (ry, rx) of a strided fold: out[ry + sh a, rx + sw b] for a < Ay, b < Ax is a
    stride-1 correlation of the padded small side with the kernel taps that land on it (rows i = taps_i,
    columns j = taps_j, in descending order), whose top-left input sits at (row0, col0) of the padded buffer."""

    ry: int
    rx: int
    Ay: int
    Ax: int
    taps_i: tuple[int, ...]
    taps_j: tuple[int, ...]
    row0: int
    col0: int


def _phase_axis(r: int, k: int, s: int, p: int, size: int) -> tuple[int, tuple[int, ...], int]:
    """(outputs of phase r, its taps in descending order, offset d of the first (largest) tap's input): along
    one axis, out[r + s a] sums in[a + (r + p - i) // s] w[i] over the taps i = (r + p) mod s, + s, ... < k;
    the largest tap has the smallest offset, and the offsets rise by 1 tap by tap from there."""
    outputs = max(0, -(-(size - r) // s))
    taps = tuple(range((r + p) % s, k, s))[::-1]
    return outputs, taps, ((r + p - taps[0]) // s if taps else 0)


@functools.lru_cache(maxsize=256)
def _phases(geom: tuple[int, ...], H: int, W: int) -> tuple[tuple[_Phase, ...], tuple[int, int, int, int]]:
    """The sh sw phases of a fold with geometry geom onto an (H, W) output, and the padding (top, bottom,
    left, right) of the (Ho, Wo) input that every phase's window needs."""
    kh, kw, sh, sw, ph, pw, Ho, Wo = geom
    rows = [_phase_axis(r, kh, sh, ph, H) for r in range(sh)]
    cols = [_phase_axis(r, kw, sw, pw, W) for r in range(sw)]
    top = max([0] + [-d for n, t, d in rows if n and t])
    bottom = max([0] + [n - 1 + d + len(t) - 1 - (Ho - 1) for n, t, d in rows if n and t])
    left = max([0] + [-d for n, t, d in cols if n and t])
    right = max([0] + [n - 1 + d + len(t) - 1 - (Wo - 1) for n, t, d in cols if n and t])
    phases = tuple(
        _Phase(ry, rx, rows[ry][0], cols[rx][0], rows[ry][1], cols[rx][1], rows[ry][2] + top, cols[rx][2] + left)
        for ry in range(sh)
        for rx in range(sw)
        if rows[ry][0] and cols[rx][0]
    )
    return phases, (top, bottom, left, right)


def _phase_fold(
    b: np.ndarray, W4: np.ndarray, bias: np.ndarray, out_shape: tuple[int, ...], geom: tuple[int, ...], tile_bytes: int
) -> np.ndarray:
    """``_gemm_fold`` channels-last without col2im: each of the sh sw output phases is a dense stride-1
    convolution of the tile's channels-last b (padded) with the taps that land on that phase, an im2col of
    contiguous runs and one sgemm, its result copied into its interleaved place; no scatter, no column
    entry that is added onto another. The stride-1 case is a single phase."""
    kh, kw, sh, sw, ph, pw, Ho, Wo = geom
    N, C, H, W = out_shape
    O = W4.shape[0]
    phases, (top, bottom, left, right) = _phases(geom, H, W)
    # Per phase: its weights as rows (u, v, o) for taps_i[u], taps_j[v] (the im2col_nhwc order).
    weights = [
        np.ascontiguousarray(W4[:, :, list(q.taps_i)][:, :, :, list(q.taps_j)].transpose(2, 3, 0, 1)).reshape(-1, C)
        for q in phases
    ]
    per_image = max([1] + [q.Ay * q.Ax * wm.shape[0] for q, wm in zip(phases, weights, strict=True)])
    out = np.empty(out_shape, dtype=b.dtype)
    nb = _images_per_tile(N, per_image * b.itemsize, tile_bytes)
    pad_shape = (nb, Ho + top + bottom, Wo + left + right, O)
    phase_pixels = max([1] + [q.Ay * q.Ax for q in phases])
    scratch = _Scratch(
        lambda: (
            np.zeros(pad_shape, b.dtype),
            np.empty(nb * per_image, b.dtype),
            np.empty(nb * phase_pixels * C, b.dtype),
            np.zeros((nb, H, W, C), b.dtype),
        )
    )
    # Every output pixel belongs to one phase; phases without taps (stride above the kernel) stay 0 in acc.
    tapless = any(not (q.taps_i and q.taps_j) for q in phases) or len(phases) < sh * sw

    def work(tile: int, worker: int) -> None:
        padded, cols_buf, y_buf, acc = scratch.get(worker)
        n0 = tile * nb
        m = min(nb, N - n0)
        _to_padded_nhwc(b, n0, padded[:m], top, left)
        if tapless:
            acc[:m] = 0
        for q, wm in zip(phases, weights, strict=True):
            if not wm.shape[0]:
                continue
            Ti, Tj = len(q.taps_i), len(q.taps_j)
            cols = cols_buf[: m * q.Ay * q.Ax * wm.shape[0]].reshape(m * q.Ay * q.Ax, wm.shape[0])
            window = padded[:m, q.row0 : q.row0 + q.Ay + Ti - 1, q.col0 : q.col0 + q.Ax + Tj - 1]
            _im2col_nhwc(window, cols, Ti, Tj, 1, 1, q.Ay, q.Ax)
            yp = y_buf[: m * q.Ay * q.Ax * C].reshape(m * q.Ay * q.Ax, C)
            np.matmul(cols, wm, out=yp)
            _interleave_phase(yp.reshape(m, q.Ay, q.Ax, C), acc[:m], q.ry, q.rx, sh, sw)
        _from_padded_nhwc(acc[:m], out, n0, 0, 0, bias, False, 0.0)  # no fused activation

    run_tiles(math.ceil(N / nb), work)
    return out


def conv2d_backward_data(dy, W, x_shape, stride, padding):
    geom = _geometry(x_shape, W.shape[2:], stride, padding, "conv2d_backward_data")
    shape = tuple(int(d) for d in x_shape)
    if not _nhwc(shape[1]):
        return production.conv2d_backward_data(dy, W, x_shape, stride, padding)
    dy = np.ascontiguousarray(dy)
    W4 = np.ascontiguousarray(W, dtype=dy.dtype)
    return _phase_fold(dy, W4, np.zeros(shape[1], dy.dtype), shape, geom, TILE_BYTES)


def conv_transpose2d_forward(x, W, b, stride, padding, output_padding):
    what = "conv_transpose2d_forward"
    y_shape = conv_transpose2d_output_shape(x.shape, W.shape, stride, padding, output_padding, what)
    if not _nhwc(W.shape[1]):
        return production.conv_transpose2d_forward(x, W, b, stride, padding, output_padding)
    _check_weight(x, W, 0, what)
    geom = _geometry(y_shape, W.shape[2:], stride, padding, what)
    x = np.ascontiguousarray(x)
    W4 = np.ascontiguousarray(W, dtype=x.dtype)
    return _phase_fold(x, W4, _bias(b, W.shape[1], x.dtype), tuple(int(d) for d in y_shape), geom, TILE_BYTES)
