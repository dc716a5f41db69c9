"""Numba CPU kernels for conv2d and conv_transpose2d: im2col and col2im in cache-sized tiles, each tile's
matrix product a single-threaded sgemm of NumPy's BLAS. The equations are in ``kernels/reference/conv2d.py``
and ``kernels/reference/conv_transpose2d.py``; this module computes the same thing, faster.

Every pass of both layers is one of three tiled loops over the batch (a tile is a few images, sized so that
its column buffer, ``TILE_BYTES``, stays in the cache; ``tiles.run_tiles`` hands the tiles to one thread per
core):

* ``_unfold_gemm``: im2col of a tile, then ``Wm @ cols`` (channels-last: ``cols @ Wm.T``, which OpenBLAS ran
  10-20% faster than ``Wm @ cols.T`` on the discriminator's shapes), written to NCHW with the bias.
  Conv2d's forward, and ConvTranspose2d's input gradient (its adjoint is a convolution).
* ``_gemm_fold``: ``Wm.T @ b_tile``, then col2im of the tile, with the bias. Conv2d's input gradient, and
  ConvTranspose2d's forward.
* ``_unfold_weight``: the sum over tiles of ``b_tile @ im2col(a_tile).T``, in ``WEIGHT_GROUPS`` groups of
  consecutive tiles, each summed in order by one worker, then the groups in order: the same bits whichever
  worker took which group. Both weight gradients (conv2d: a = x, b = dy; transposed: a = dy, b = x), with the
  bias gradient summed in the same loop.

Layout: a pass whose unfolded (or folded) side has ``NHWC_MIN_CHANNELS`` channels or more transposes its tile
to a zero-padded channels-last buffer; each patch is then kh kw runs of C contiguous values, copied (im2col) or
added (col2im) as vectors, and the weights are permuted to (O, kh, kw, C) to match. The table gathers below
cost 35-45% of a tile's GEMM time on the discriminator's layers; the copies cost 10-18% (all of it in the two
layout changes). Passes with fewer channels (the 3-channel image side) keep the gathers.

Nothing of the size of the whole im2col matrix is made: the forward pass keeps x (an ``Unfolded``, which
``np.asarray`` turns into the matrix when asked) and the weight gradient unfolds x again, tile by tile:
rebuilding a tile in the cache costs less than writing the full matrix (151 MB for the discriminator's second
convolution at 256 images) and reading it back. Measured per layer and for the whole DCGAN step in
``bench/results/cpu-conv-versions-2026-12-02.md`` (``python -m bench.dev.cpu_conv_versions``); the version
this replaced (one full im2col and one multi-threaded GEMM per pass) is ``bench/dev/cpu_conv_v1.py``.

Choices kept from that version for the channels-first passes, each measured on the DCGAN shapes:

* im2col copies each (n, c) plane once into a zero-padded scratch plane, then fills every kernel tap's row
  with a gather through a precomputed index table: no bounds tests in the inner loop.
* col2im is a gather: for every pixel, the at most ceil(kh/sh) ceil(kw/sw) column entries that land on it (a
  precomputed table), summed in a fixed order. No two tiles write the same pixel: no atomics, and the result
  does not depend on how the tiles were shared out (in either layout).
* Outputs are allocated by NumPy, never inside jitted code (NumPy asks for transparent huge pages); large ones
  through ``recycle.empty``, which reuses the memory of the last step's arrays that nothing holds any more.

A tile of one image multiplies the image's own (O, Ho Wo) plane (a view); larger tiles copy theirs into
(O, nb Ho Wo). The bias gradient's channel sums run in ``LANES`` partial sums (a vector register), not one
running sum.

Tried and not adopted (``bench/dev/cpu_conv_v6.py``): every strided fold phase by phase (each of the sh sw
output phases a dense stride-1 convolution with the taps that land on it, no col2im); its patches copy twice
the values the GEMM + col2im form reads, and it measured slower on every DCGAN shape.

The public ``im2col``/``col2im`` (whole batch, parallel over planes) stay for callers that want the matrix.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import njit, prange

from ..reference.activation import check_gate
from ..reference.conv_geometry import conv2d_output_hw, conv_args, conv_transpose2d_output_shape
from ..reference.whole_backward import add_into
from . import recycle
from .activation import act, act_grad, epilogue
from .tiles import run_tiles, workers

__all__ = [
    "Unfolded",
    "im2col",
    "col2im",
    "conv2d_forward",
    "conv2d_backward_data",
    "conv2d_backward_weight",
    "conv_transpose2d_forward",
    "conv_transpose2d_backward_data",
    "conv_transpose2d_backward_weight",
]

# Bytes of one tile's column buffer (im2col side), for the forward/data passes and for the weight gradient: about
# the 1 MiB L2 cache of a core. 256 KiB to 1 MiB measured within noise of each other; 4 MiB weight tiles were 12%
# slower than 1 MiB and 16 MiB 30% slower on an idle machine (bench/results/cpu-conv-versions-2026-12-02.md).
TILE_BYTES = 1 << 20
WEIGHT_TILE_BYTES = 1 << 20
# From this many channels on, a pass unfolds channels-last (NHWC patches: contiguous copies instead of gathers).
NHWC_MIN_CHANNELS = 16
# Fixed, not the core count: the weight gradient's bits do not depend on the machine's cores.
WEIGHT_GROUPS = 8
# Partial sums per channel in the bias gradient's reduction (8 float64 = one AVX-512 register).
LANES = 8


# -- index tables (pure NumPy, cached per geometry) --------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _im2col_table(kh: int, kw: int, sh: int, sw: int, pw: int, W: int, Ho: int, Wo: int) -> np.ndarray:
    """idx[i kw + j, oh Wo + ow] = flat offset of xp[oh sh + i, ow sw + j] in one zero-padded plane of width
    W + 2 pw."""
    i, j = np.arange(kh)[:, None, None, None], np.arange(kw)[None, :, None, None]
    oh, ow = np.arange(Ho)[None, None, :, None], np.arange(Wo)[None, None, None, :]
    idx = ((oh * sh + i) * (W + 2 * pw) + ow * sw + j).reshape(kh * kw, Ho * Wo).astype(np.int32)
    idx.flags.writeable = False
    return idx


@functools.lru_cache(maxsize=256)
def _col2im_table(kh: int, kw: int, sh: int, sw: int, ph: int, pw: int, H: int, W: int, Ho: int, Wo: int) -> np.ndarray:
    """tab[m, h W + w] = offset, in one (c, n) block of columns laid out (kh kw, Ho Wo), of the m-th column
    entry that lands on pixel (h, w), or kh kw Ho Wo (a zero slot) when there is no m-th entry.

    Padded row hp = h + ph receives kernel rows i = hp mod sh, hp mod sh + sh, ... (those with
    0 <= oh = (hp - i) / sh < Ho), so a pixel has at most M = ceil(kh/sh) ceil(kw/sw) entries; they are
    listed in ascending (i, j) order, the summation order of the reference."""
    hp = np.arange(H)[:, None, None, None] + ph
    wp = np.arange(W)[None, :, None, None] + pw
    i = hp % sh + sh * np.arange(-(-kh // sh))[None, None, :, None]
    j = wp % sw + sw * np.arange(-(-kw // sw))[None, None, None, :]
    oh, ow = (hp - i) // sh, (wp - j) // sw
    valid = (i < kh) & (j < kw) & (oh >= 0) & (oh < Ho) & (ow >= 0) & (ow < Wo)
    tab = np.where(valid, (i * kw + j) * (Ho * Wo) + oh * Wo + ow, kh * kw * Ho * Wo)
    tab = np.ascontiguousarray(tab.reshape(H * W, -1).T).astype(np.int32)
    tab.flags.writeable = False
    return tab


# -- jitted kernels ----------------------------------------------------------------------------------------


@njit(cache=True, parallel=True)
def _im2col(x, cols, idx, ph, pw):  # pragma: no cover - compiled
    """Fill cols, viewed as (C kh kw, N, Ho Wo), from x (N, C, H, W)."""
    N, C, H, W = x.shape
    KK, HoWo = idx.shape
    Wp = W + 2 * pw
    for t in prange(C * N):
        c = t // N
        n = t - c * N
        plane = np.zeros((H + 2 * ph) * Wp, dtype=x.dtype)
        for h in range(H):
            for w in range(W):
                plane[(h + ph) * Wp + w + pw] = x[n, c, h, w]
        for ij in range(KK):
            row = cols[c * KK + ij, n]
            tap = idx[ij]
            for p in range(HoWo):
                row[p] = plane[tap[p]]


@njit(cache=True, parallel=True)
def _col2im(cols, x, tab, bias):  # pragma: no cover - compiled
    """Fill x (N, C, H, W) with bias[c] plus the sum of its column entries; cols is any (C kh kw, N, Ho Wo)
    view, strided or not."""
    N, C, H, W = x.shape
    KK = cols.shape[0] // C
    HoWo = cols.shape[2]
    M, HW = tab.shape
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        # A contiguous private copy of the block, with the zero slot at its end, keeps the gathers local.
        block = np.empty(KK * HoWo + 1, dtype=x.dtype)
        for ij in range(KK):
            row = cols[c * KK + ij, n]
            for p in range(HoWo):
                block[ij * HoWo + p] = row[p]
        block[KK * HoWo] = 0
        out = x[n, c].reshape(HW)
        for q in range(HW):
            out[q] = bias[c]
        for m in range(M):
            entry = tab[m]
            for q in range(HW):
                out[q] += block[entry[q]]


# -- serial tile kernels (run concurrently by the tile workers: nogil, no prange) ---------------------------


@njit(cache=True, nogil=True)
def _im2col_tile(x, n0, cols, idx, ph, pw, plane):  # pragma: no cover - compiled
    """cols (C kh kw, nb, Ho Wo) <- the receptive fields of images n0 .. n0 + nb - 1 of x (N, C, H, W).
    plane: scratch of (H + 2 ph)(W + 2 pw) zeros; only its interior is written, so its border stays 0."""
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    KK, HoWo = idx.shape
    nb = cols.shape[1]
    Wp = W + 2 * pw
    for c in range(C):
        for t in range(nb):
            for h in range(H):
                base = (h + ph) * Wp + pw
                for w in range(W):
                    plane[base + w] = x[n0 + t, c, h, w]
            for ij in range(KK):
                row = cols[c * KK + ij, t]
                tap = idx[ij]
                for p in range(HoWo):
                    row[p] = plane[tap[p]]


@njit(cache=True, nogil=True)
def _col2im_tile(cols, x, n0, tab, bias, block, use, slope):  # pragma: no cover - compiled
    """x[n0 + t, c] = act(bias[c] + the sum of its entries in cols (C kh kw, nb, Ho Wo)), for t < nb.
    block: scratch of kh kw Ho Wo + 1 (the last slot is the zero that missing entries point at).
    act: the fused epilogue (activation.act), applied to each plane while it is in the cache."""
    C = x.shape[1]
    KK = cols.shape[0] // C
    nb, HoWo = cols.shape[1], cols.shape[2]
    M, HW = tab.shape
    block[KK * HoWo] = 0
    for t in range(nb):
        for c in range(C):
            for ij in range(KK):
                row = cols[c * KK + ij, t]
                for p in range(HoWo):
                    block[ij * HoWo + p] = row[p]
            out = x[n0 + t, c].reshape(HW)
            for q in range(HW):
                out[q] = bias[c]
            for m in range(M):
                entry = tab[m]
                for q in range(HW):
                    out[q] += block[entry[q]]
            if use:
                for q in range(HW):
                    out[q] = act(out[q], use, slope)


@njit(cache=True, nogil=True)
def _cm_to_nchw(mat, y, n0, bias, use, slope):  # pragma: no cover - compiled
    """y[n0 + t, o] = act(mat[o, t] + bias[o]) for mat (O, nb, H W) and y (N, O, H, W) (act: the fused
    epilogue, activation.act)."""
    O, nb, HW = mat.shape
    for t in range(nb):
        for o in range(O):
            out = y[n0 + t, o].reshape(HW)
            src = mat[o, t]
            for q in range(HW):
                out[q] = act(src[q] + bias[o], use, slope)


@njit(cache=True, nogil=True)
def _nchw_to_cm(a, n0, mat):  # pragma: no cover - compiled
    """mat[c, t] = a[n0 + t, c] for mat (C, nb, H W) and a (N, C, H, W)."""
    C, nb, HW = mat.shape
    for c in range(C):
        for t in range(nb):
            src = a[n0 + t, c].reshape(HW)
            dst = mat[c, t]
            for q in range(HW):
                dst[q] = src[q]


@njit(cache=True, nogil=True)
def _nchw_to_cm_grad(dy, y, n0, mat, slope):  # pragma: no cover - compiled
    """mat[c, t] = dy[n0 + t, c] * act'(y[n0 + t, c]) for mat (C, nb, H W): the fused activation's gradient
    (activation.act_grad), formed while the tile is copied to channel-major anyway."""
    C, nb, HW = mat.shape
    for c in range(C):
        for t in range(nb):
            src = dy[n0 + t, c].reshape(HW)
            gate = y[n0 + t, c].reshape(HW)
            dst = mat[c, t]
            for q in range(HW):
                dst[q] = act_grad(src[q], gate[q], slope)


@njit(inline="always", cache=True)
def _plane_sum(plane, part):  # pragma: no cover - compiled
    """The float64 sum of a contiguous 1-D plane, in LANES interleaved partial sums (one vector register; part
    is their scratch) added up at its end: a single running sum is one dependent add per value (4 cycles
    each), which made the bias gradient cost as much as a 3-channel layer's GEMM."""
    n = plane.shape[0]
    body = n - n % LANES
    part[:] = 0.0
    for q in range(0, body, LANES):
        for lane in range(LANES):
            part[lane] += plane[q + lane]
    s = 0.0
    for q in range(body, n):
        s += plane[q]
    for lane in range(LANES):
        s += part[lane]
    return s


@njit(cache=True, nogil=True)
def _cm_sums(mat, sums):  # pragma: no cover - compiled
    """sums[c] += the sum of mat[c] for mat (C, nb, H W), plane by plane in _channel_sums's order: the same
    bits as _channel_sums over the images the tile holds."""
    C, nb = mat.shape[0], mat.shape[1]
    part = np.zeros(LANES, dtype=np.float64)
    for t in range(nb):
        for c in range(C):
            sums[c] += _plane_sum(mat[c, t], part)


@njit(cache=True, nogil=True)
def _channel_sums(a, n0, nb, sums):  # pragma: no cover - compiled
    """sums[c] += the sum of a[n0 .. n0 + nb - 1, c] (float64 accumulators), plane by plane (_plane_sum)."""
    C, HW = a.shape[1], a.shape[2] * a.shape[3]
    part = np.zeros(LANES, dtype=np.float64)
    for t in range(nb):
        for c in range(C):
            sums[c] += _plane_sum(a[n0 + t, c].reshape(HW), part)


@njit(cache=True, nogil=True)
def _to_padded_nhwc(a, n0, xt, ph, pw):  # pragma: no cover - compiled
    """xt[t, h + ph, w + pw, c] = a[n0 + t, c, h, w] for xt (nb, H + 2 ph, W + 2 pw, C); the border is not
    written (the caller's zeros stay)."""
    C, H, W = a.shape[1], a.shape[2], a.shape[3]
    for t in range(xt.shape[0]):
        for c in range(C):
            for h in range(H):
                dst = xt[t, h + ph]
                for w in range(W):
                    dst[w + pw, c] = a[n0 + t, c, h, w]


@njit(cache=True, nogil=True)
def _im2col_nhwc(xt, cols, kh, kw, sh, sw, Ho, Wo):  # pragma: no cover - compiled
    """cols (nb Ho Wo, kh kw C): row (t, oh, ow) is the patch xt[t, oh sh + i, ow sw + j, :] for every (i, j),
    in that order: contiguous runs of C values, no gathers."""
    nb, C = xt.shape[0], xt.shape[3]
    r = 0
    for t in range(nb):
        for oh in range(Ho):
            for ow in range(Wo):
                row = cols[r]
                for i in range(kh):
                    src_row = xt[t, oh * sh + i]
                    for j in range(kw):
                        src = src_row[ow * sw + j]
                        base = (i * kw + j) * C
                        for c in range(C):
                            row[base + c] = src[c]
                r += 1


@njit(cache=True, nogil=True)
def _col2im_nhwc(cols, acc, kh, kw, sh, sw, Ho, Wo):  # pragma: no cover - compiled
    """acc (nb, Hp, Wp, C) = the sum of every patch row of cols (nb Ho Wo, kh kw C) at its place (the adjoint of
    _im2col_nhwc), in a fixed order."""
    nb, C = acc.shape[0], acc.shape[3]
    acc[:] = 0
    r = 0
    for t in range(nb):
        for oh in range(Ho):
            for ow in range(Wo):
                row = cols[r]
                for i in range(kh):
                    dst_row = acc[t, oh * sh + i]
                    for j in range(kw):
                        dst = dst_row[ow * sw + j]
                        base = (i * kw + j) * C
                        for c in range(C):
                            dst[c] += row[base + c]
                r += 1


@njit(cache=True, nogil=True)
def _from_padded_nhwc(acc, x, n0, ph, pw, bias, use, slope):  # pragma: no cover - compiled
    """x[n0 + t, c, h, w] = act(acc[t, h + ph, w + pw, c] + bias[c]) (act: the fused epilogue)."""
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    for t in range(acc.shape[0]):
        for c in range(C):
            for h in range(H):
                src = acc[t, h + ph]
                for w in range(W):
                    x[n0 + t, c, h, w] = act(src[w + pw, c] + bias[c], use, slope)


# -- the three tiled passes ------------------------------------------------------------------------------


def _images_per_tile(N: int, bytes_per_image: int, target: int) -> int:
    return max(1, min(N, target // max(1, bytes_per_image)))


class _Scratch:
    """Per-worker buffers of one pass, allocated on the worker's first tile (by NumPy, see the module notes)."""

    def __init__(self, make) -> None:
        self.make = make
        self.bufs = [None] * workers()

    def get(self, worker: int):
        if self.bufs[worker] is None:
            self.bufs[worker] = self.make()
        return self.bufs[worker]


def _tile_cm(b: np.ndarray, n0: int, m: int, buf: np.ndarray, gate: tuple | None = None) -> np.ndarray:
    """Images n0 .. n0 + m - 1 of b (N, O, Ho, Wo) as the (O, m Ho Wo) matrix: the image itself when m is 1 (a
    view, no copy), else copied into buf. ``gate`` (y, slope): b is dy of a fused activation, and the matrix
    is dz = dy * act'(y), always formed in buf."""
    O, HoWo = b.shape[1], b.shape[2] * b.shape[3]
    if m == 1 and gate is None:
        return b[n0].reshape(O, HoWo)
    mat = buf[: O * m * HoWo].reshape(O, m * HoWo)
    if gate is None:
        _nchw_to_cm(b, n0, mat.reshape(O, m, HoWo))
    else:
        _nchw_to_cm_grad(b, gate[0], n0, mat.reshape(O, m, HoWo), gate[1])
    return mat


def _nhwc(C: int) -> bool:
    """Whether a pass unfolds (or folds) channels-last: patches are then runs of C contiguous values."""
    return C >= NHWC_MIN_CHANNELS


def _unfold_gemm(
    a: np.ndarray, W4: np.ndarray, bias: np.ndarray, geom: tuple[int, ...], tile_bytes: int, slope=None
) -> np.ndarray:
    """out[n] = act(W4.reshape(O, -1) @ im2col(a[n]) + bias[:, None]), as (N, O, Ho, Wo): the convolution of
    a (N, C, H, W) with W4 (O, C, kh, kw); act the fused epilogue (``slope`` None: none)."""
    use, slope_f = epilogue(slope)
    kh, kw, sh, sw, ph, pw, Ho, Wo = geom
    N, C, H, W = a.shape
    O, CKK = W4.shape[0], C * kh * kw
    HoWo, Hp, Wp = Ho * Wo, H + 2 * ph, W + 2 * pw
    out = recycle.empty((N, O, Ho, Wo), a.dtype)
    nb = _images_per_tile(N, CKK * HoWo * a.itemsize, tile_bytes)
    nhwc = _nhwc(C)
    if nhwc:
        WmT = np.ascontiguousarray(W4.transpose(2, 3, 1, 0)).reshape(CKK, O)  # rows (i, j, c)
        pad_shape: tuple[int, ...] = (nb, Hp, Wp, C)
    else:
        Wm = W4.reshape(O, CKK)
        idx = _im2col_table(kh, kw, sh, sw, pw, W, Ho, Wo)
        pad_shape = (Hp * Wp,)
    scratch = _Scratch(
        lambda: (np.empty(CKK * nb * HoWo, a.dtype), np.empty(O * nb * HoWo, a.dtype), np.zeros(pad_shape, a.dtype))
    )

    def work(tile: int, worker: int) -> None:
        cols_buf, y_buf, padded = scratch.get(worker)
        n0 = tile * nb
        m = min(nb, N - n0)
        if nhwc:
            # cols @ WmT: Wm @ cols.T ran 10-20% slower in OpenBLAS on D's shapes. Channels-last out.
            cols = cols_buf[: CKK * m * HoWo].reshape(m * HoWo, CKK)
            y_nhwc = y_buf[: m * HoWo * O].reshape(m * HoWo, O)
            _to_padded_nhwc(a, n0, padded[:m], ph, pw)
            _im2col_nhwc(padded[:m], cols, kh, kw, sh, sw, Ho, Wo)
            np.matmul(cols, WmT, out=y_nhwc)
            _from_padded_nhwc(y_nhwc.reshape(m, Ho, Wo, O), out, n0, 0, 0, bias, use, slope_f)
        else:
            y_mat = y_buf[: O * m * HoWo].reshape(O, m * HoWo)
            cols = cols_buf[: CKK * m * HoWo].reshape(CKK, m * HoWo)
            _im2col_tile(a, n0, cols.reshape(CKK, m, HoWo), idx, ph, pw, padded)
            np.matmul(Wm, cols, out=y_mat)
            _cm_to_nchw(y_mat.reshape(O, m, HoWo), out, n0, bias, use, slope_f)

    run_tiles(math.ceil(N / nb), work)
    return out


def _gemm_fold(
    b: np.ndarray,
    W4: np.ndarray,
    bias: np.ndarray,
    out_shape: tuple[int, ...],
    geom: tuple[int, ...],
    tile_bytes: int,
    slope=None,
    gate: tuple | None = None,
) -> np.ndarray:
    """out = act(col2im(W4.reshape(O, -1).T @ b_mat) + bias), of shape out_shape (N, C, H, W), for b
    (N, O, Ho, Wo) and W4 (O, C, kh, kw): the adjoint of ``_unfold_gemm``; act the fused epilogue. ``gate``
    (y, slope): b is dy of a fused activation, multiplied by act'(y) as each tile is copied (``_tile_cm``)."""
    use, slope_f = epilogue(slope)
    kh, kw, sh, sw, ph, pw, Ho, Wo = geom
    N, C, H, W = out_shape
    O, CKK = W4.shape[0], C * kh * kw
    HoWo, Hp, Wp = Ho * Wo, H + 2 * ph, W + 2 * pw
    out = recycle.empty(out_shape, b.dtype)
    nb = _images_per_tile(N, CKK * HoWo * b.itemsize, tile_bytes)
    nhwc = _nhwc(C)
    if nhwc:
        Wm = np.ascontiguousarray(W4.transpose(0, 2, 3, 1)).reshape(O, CKK)
        pad_shape: tuple[int, ...] = (nb, Hp, Wp, C)
    else:
        Wm = W4.reshape(O, CKK)
        tab = _col2im_table(kh, kw, sh, sw, ph, pw, H, W, Ho, Wo)
        pad_shape = (kh * kw * HoWo + 1,)
    scratch = _Scratch(
        lambda: (np.empty(O * nb * HoWo, b.dtype), np.empty(CKK * nb * HoWo, b.dtype), np.empty(pad_shape, b.dtype))
    )

    def work(tile: int, worker: int) -> None:
        b_buf, cols_buf, padded = scratch.get(worker)
        n0 = tile * nb
        m = min(nb, N - n0)
        b_mat = _tile_cm(b, n0, m, b_buf, gate)
        if nhwc:
            cols = cols_buf[: CKK * m * HoWo].reshape(m * HoWo, CKK)
            np.matmul(b_mat.T, Wm, out=cols)
            _col2im_nhwc(cols, padded[:m], kh, kw, sh, sw, Ho, Wo)
            _from_padded_nhwc(padded[:m], out, n0, ph, pw, bias, use, slope_f)
        else:
            cols = cols_buf[: CKK * m * HoWo].reshape(CKK, m * HoWo)
            np.matmul(Wm.T, b_mat, out=cols)
            _col2im_tile(cols.reshape(CKK, m, HoWo), out, n0, tab, bias, padded, use, slope_f)

    run_tiles(math.ceil(N / nb), work)
    return out


def _unfold_weight(
    a: np.ndarray, b: np.ndarray, geom: tuple[int, ...], sum_of: str, tile_bytes: int, gate: tuple | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(sum_n b_mat[n] @ im2col(a[n]).T as (Ob, C, kh, kw), the channel sums of ``sum_of``: "a" or "b"), for
    a (N, C, H, W) and b (N, Ob, Ho, Wo): a weight gradient and its bias gradient. ``gate`` (y, slope): b is
    dy of a fused activation, and b_mat (whose rows are also the "b" sums) is dz = dy * act'(y)."""
    kh, kw, sh, sw, ph, pw, Ho, Wo = geom
    N, C, H, W = a.shape
    Ob = b.shape[1]
    CKK, HoWo, Hp, Wp = C * kh * kw, Ho * Wo, H + 2 * ph, W + 2 * pw
    summed = a if sum_of == "a" else b
    nb = _images_per_tile(N, CKK * HoWo * a.itemsize, tile_bytes)
    nhwc = _nhwc(C)
    if nhwc:
        pad_shape: tuple[int, ...] = (nb, Hp, Wp, C)
    else:
        idx = _im2col_table(kh, kw, sh, sw, pw, W, Ho, Wo)
        pad_shape = (Hp * Wp,)
    n_tiles = math.ceil(N / nb)
    # The tiles are summed in WEIGHT_GROUPS groups of consecutive tiles, each group by one worker in tile order
    # into its own slot, and the groups in a fixed order: the same bits whichever worker takes which group.
    n_groups = min(n_tiles, WEIGHT_GROUPS)
    totals = np.zeros((n_groups, Ob, CKK), a.dtype)
    sums = np.zeros((n_groups, summed.shape[1]), np.float64)
    scratch = _Scratch(
        lambda: (
            np.empty(CKK * nb * HoWo, a.dtype),
            np.empty(Ob * nb * HoWo, a.dtype),
            np.zeros(pad_shape, a.dtype),
            np.empty((Ob, CKK), a.dtype),
        )
    )

    def work(group: int, worker: int) -> None:
        cols_buf, b_buf, padded, product = scratch.get(worker)
        for tile in range(group * n_tiles // n_groups, (group + 1) * n_tiles // n_groups):
            n0 = tile * nb
            m = min(nb, N - n0)
            b_mat = _tile_cm(b, n0, m, b_buf, gate)
            if nhwc:
                cols = cols_buf[: CKK * m * HoWo].reshape(m * HoWo, CKK)
                _to_padded_nhwc(a, n0, padded[:m], ph, pw)
                _im2col_nhwc(padded[:m], cols, kh, kw, sh, sw, Ho, Wo)
                np.matmul(b_mat, cols, out=product)
            else:
                cols = cols_buf[: CKK * m * HoWo].reshape(CKK, m * HoWo)
                _im2col_tile(a, n0, cols.reshape(CKK, m, HoWo), idx, ph, pw, padded)
                np.matmul(b_mat, cols.T, out=product)
            totals[group] += product
            if sum_of == "b":  # b_mat holds the tile's b (or dz) already: the same sums, read from the cache
                _cm_sums(b_mat.reshape(Ob, m, HoWo), sums[group])
            else:
                _channel_sums(summed, n0, m, sums[group])

    run_tiles(n_groups, work)
    dW = np.zeros((Ob, CKK), a.dtype)
    for total in totals:
        dW += total
    db = sums.sum(axis=0).astype(a.dtype) if n_groups else np.zeros(summed.shape[1], a.dtype)
    if nhwc:
        return np.ascontiguousarray(dW.reshape(Ob, kh, kw, C).transpose(0, 3, 1, 2)), db
    return dW.reshape(Ob, C, kh, kw), db


# -- helpers -----------------------------------------------------------------------------------------------


def _geometry(shape: tuple[int, ...], kernel_size, stride, padding, what: str = "im2col") -> tuple[int, ...]:
    """(kh, kw, sh, sw, ph, pw, Ho, Wo), validated: the jitted loops trust these sizes and do no bounds checks."""
    if len(shape) != 4:
        raise ValueError(f"{what}: expected an (N, C, H, W) shape, received {tuple(shape)}")
    (kh, kw), (sh, sw), (ph, pw) = conv_args(kernel_size, stride, padding, what)
    Ho, Wo = conv2d_output_hw(tuple(shape[2:]), kernel_size, stride, padding, what)
    return kh, kw, sh, sw, ph, pw, Ho, Wo


class Unfolded:
    """im2col(x) for one kernel size, stride and padding, not materialised: what the forward pass keeps for
    the weight gradient, which unfolds x again tile by tile. ``np.asarray(u)`` builds the (C kh kw, N Ho Wo)
    matrix, for a caller that wants it."""

    def __init__(self, x: np.ndarray, kernel_size, stride, padding) -> None:
        self.x, self.kernel_size, self.stride, self.padding = x, tuple(kernel_size), tuple(stride), tuple(padding)
        kh, kw, _, _, _, _, Ho, Wo = _geometry(x.shape, kernel_size, stride, padding, "Unfolded")
        self.shape = (x.shape[1] * kh * kw, x.shape[0] * Ho * Wo)
        self.dtype = x.dtype

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        cols = im2col(self.x, self.kernel_size, self.stride, self.padding)
        return cols if dtype is None else cols.astype(dtype, copy=False)


def _to_cm(x: np.ndarray) -> np.ndarray:
    """(N, C, H, W) -> (C, N H W), im2col's column order (a NumPy copy)."""
    return x.transpose(1, 0, 2, 3).reshape(x.shape[1], -1)


def _bias(b: np.ndarray | None, n: int, dtype) -> np.ndarray:
    return np.zeros(n, dtype=dtype) if b is None else np.asarray(b, dtype=dtype)


def _check_weight(a: np.ndarray, W: np.ndarray, axis: int, what: str) -> None:
    if a.ndim != 4 or a.shape[1] != W.shape[axis]:
        raise ValueError(f"{what}: input of shape {tuple(a.shape)} does not match W of shape {tuple(W.shape)}")


def _fold(cols: np.ndarray, x_shape: tuple[int, ...], kernel_size, stride, padding, bias, what: str) -> np.ndarray:
    """col2im of cols (C kh kw, N Ho Wo), plus bias[c] when given."""
    kh, kw, sh, sw, ph, pw, Ho, Wo = _geometry(x_shape, kernel_size, stride, padding, what)
    N, C, H, W = (int(d) for d in x_shape)
    if tuple(cols.shape) != (C * kh * kw, N * Ho * Wo):
        raise ValueError(
            f"{what}: cols of shape {tuple(cols.shape)} do not match x_shape {tuple(x_shape)}: "
            f"expected {(C * kh * kw, N * Ho * Wo)}"
        )
    bias = np.zeros(C, dtype=cols.dtype) if bias is None else np.asarray(bias, dtype=cols.dtype)
    x = np.empty((N, C, H, W), dtype=cols.dtype)
    cols3 = np.ascontiguousarray(cols).reshape(C * kh * kw, N, Ho * Wo)
    _col2im(cols3, x, _col2im_table(kh, kw, sh, sw, ph, pw, H, W, Ho, Wo), bias)
    return x


# -- the kernel API ----------------------------------------------------------------------------------------


def im2col(
    x: np.ndarray, kernel_size: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]
) -> np.ndarray:
    kh, kw, sh, sw, ph, pw, Ho, Wo = _geometry(x.shape, kernel_size, stride, padding, "im2col")
    N, C = x.shape[:2]
    cols = np.empty((C * kh * kw, N * Ho * Wo), dtype=x.dtype)
    idx = _im2col_table(kh, kw, sh, sw, pw, int(x.shape[3]), Ho, Wo)
    _im2col(np.ascontiguousarray(x), cols.reshape(C * kh * kw, N, Ho * Wo), idx, ph, pw)
    return cols


def col2im(
    cols: np.ndarray,
    x_shape: tuple[int, int, int, int],
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
) -> np.ndarray:
    return _fold(cols, x_shape, kernel_size, stride, padding, None, "col2im")


def conv2d_forward(
    x: np.ndarray,
    W: np.ndarray,
    b: np.ndarray | None,
    stride: tuple[int, int],
    padding: tuple[int, int],
    slope: float | None = None,
) -> tuple[np.ndarray, Unfolded]:
    """Returns (y, cols): cols is an ``Unfolded`` (im2col(x), not materialised) for conv2d_backward_weight.
    b=None means no bias; ``slope``: the fused activation applied as each tile is written (None: none)."""
    what = "conv2d_forward"
    _check_weight(x, W, 1, what)
    geom = _geometry(x.shape, W.shape[2:], stride, padding, what)
    x = np.ascontiguousarray(x)
    W4 = np.ascontiguousarray(W, dtype=x.dtype)
    y = _unfold_gemm(x, W4, _bias(b, W.shape[0], x.dtype), geom, TILE_BYTES, slope)
    return y, Unfolded(x, W.shape[2:], stride, padding)


def conv2d_backward_data(
    dy: np.ndarray,
    W: np.ndarray,
    x_shape: tuple[int, int, int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
) -> np.ndarray:
    what = "conv2d_backward_data"
    _check_weight(dy, W, 0, what)
    geom = _geometry(x_shape, W.shape[2:], stride, padding, what)
    if tuple(dy.shape[2:]) != geom[6:] or dy.shape[0] != x_shape[0]:
        raise ValueError(f"{what}: dy of shape {tuple(dy.shape)} does not match x_shape {tuple(x_shape)}")
    dy = np.ascontiguousarray(dy)
    shape = tuple(int(d) for d in x_shape)
    W4 = np.ascontiguousarray(W, dtype=dy.dtype)
    return _gemm_fold(dy, W4, np.zeros(shape[1], dy.dtype), shape, geom, TILE_BYTES)


def conv2d_backward_weight(
    dy: np.ndarray, cols: Unfolded | np.ndarray, W_shape: tuple[int, int, int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Returns (dW, db). cols: conv2d_forward's ``Unfolded``, or an im2col matrix."""
    if not isinstance(cols, Unfolded):
        dW = (_to_cm(dy) @ np.asarray(cols).T).reshape(W_shape)
        return dW, dy.sum(axis=(0, 2, 3))
    geom = _weight_pass_geometry(dy, cols, W_shape, "conv2d_backward_weight")
    dW, db = _unfold_weight(cols.x, np.ascontiguousarray(dy), geom, "b", WEIGHT_TILE_BYTES)
    return dW.reshape(W_shape), db


def _weight_pass_geometry(dy: np.ndarray, cols: Unfolded, W_shape: tuple[int, ...], what: str) -> tuple[int, ...]:
    """Conv2d's weight pass: the geometry of the forward that made ``cols``, with dy checked against it."""
    x = cols.x
    geom = _geometry(x.shape, cols.kernel_size, cols.stride, cols.padding, what)
    if dy.ndim != 4 or tuple(dy.shape) != (x.shape[0], W_shape[0], *geom[6:]):
        raise ValueError(
            f"{what}: dy of shape {tuple(dy.shape)} does not match the forward's input {tuple(x.shape)} and "
            f"W_shape {tuple(W_shape)}"
        )
    return geom


def conv_transpose2d_forward(
    x: np.ndarray,
    W: np.ndarray,
    b: np.ndarray | None,
    stride: tuple[int, int],
    padding: tuple[int, int],
    output_padding: tuple[int, int],
    slope: float | None = None,
) -> np.ndarray:
    """y = act(conv_transpose(x) + b), act (``slope``) applied as each tile is written (None: none)."""
    what = "conv_transpose2d_forward"
    y_shape = conv_transpose2d_output_shape(x.shape, W.shape, stride, padding, output_padding, what)
    _check_weight(x, W, 0, what)
    geom = _geometry(y_shape, W.shape[2:], stride, padding, what)
    x = np.ascontiguousarray(x)
    W4 = np.ascontiguousarray(W, dtype=x.dtype)
    return _gemm_fold(x, W4, _bias(b, W.shape[1], x.dtype), tuple(int(d) for d in y_shape), geom, TILE_BYTES, slope)


def conv_transpose2d_backward_data(
    dy: np.ndarray, W: np.ndarray, stride: tuple[int, int], padding: tuple[int, int]
) -> tuple[np.ndarray, Unfolded]:
    """Returns (dx, dy_cols): dy_cols is an ``Unfolded`` (im2col(dy), not materialised)."""
    what = "conv_transpose2d_backward_data"
    _check_weight(dy, W, 1, what)
    geom = _geometry(dy.shape, W.shape[2:], stride, padding, what)
    dy = np.ascontiguousarray(dy)
    dx = _unfold_gemm(dy, np.ascontiguousarray(W, dtype=dy.dtype), np.zeros(W.shape[0], dy.dtype), geom, TILE_BYTES)
    return dx, Unfolded(dy, W.shape[2:], stride, padding)


def conv_transpose2d_backward_weight(
    dy: np.ndarray,
    x: np.ndarray,
    W_shape: tuple[int, int, int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dy_cols: Unfolded | np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Returns (dW, db). dy_cols (optional): an im2col matrix of dy to use; an ``Unfolded`` or None means
    unfold dy tile by tile."""
    what = "conv_transpose2d_backward_weight"
    geom = _geometry(dy.shape, (W_shape[2], W_shape[3]), stride, padding, what)
    if x.ndim != 4 or tuple(x.shape) != (dy.shape[0], W_shape[0], *geom[6:]) or dy.shape[1] != W_shape[1]:
        raise ValueError(
            f"{what}: dy of shape {tuple(dy.shape)} does not match x of shape {tuple(x.shape)} and W_shape "
            f"{tuple(W_shape)}"
        )
    if dy_cols is not None and not isinstance(dy_cols, Unfolded):
        dW = (_to_cm(x) @ np.asarray(dy_cols).T).reshape(W_shape)
        return dW, dy.sum(axis=(0, 2, 3))
    dW, db = _unfold_weight(np.ascontiguousarray(dy), np.ascontiguousarray(x), geom, "a", WEIGHT_TILE_BYTES)
    return dW.reshape(W_shape), db


def conv2d_backward_gated(
    dy: np.ndarray,
    y: np.ndarray,
    slope: float,
    cols: Unfolded,
    W: np.ndarray,
    x_shape: tuple[int, int, int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dW: np.ndarray | None = None,
    db: np.ndarray | None = None,
    input_grad: bool = True,
) -> np.ndarray | None:
    """The whole backward of Conv2d + LeakyReLU(slope) (ReLU for 0) in the tiled passes: dz = dy * act'(y) is
    formed in each tile's channel-major copy of dy, which the data pass and the weight pass make anyway, so
    no dz array is written. dW += the weight gradient, db += the bias gradient (each skipped when None); returns
    the input gradient when ``input_grad``. Not a contract op: ``fused.conv2d_backward`` calls it when every
    kernel it stands for is the kernel set's own (not one the walkthrough swapped in)."""
    what = "conv2d_backward"
    check_gate(dy, y, slope, what)
    geom = _weight_pass_geometry(dy, cols, W.shape, what)
    if tuple(cols.x.shape) != tuple(x_shape):
        raise ValueError(f"{what}: x_shape {tuple(x_shape)} is not the forward's input {tuple(cols.x.shape)}")
    dy, gate = np.ascontiguousarray(dy), (np.ascontiguousarray(y), float(slope))
    if dW is not None or db is not None:
        gW, gb = _unfold_weight(cols.x, dy, geom, "b", WEIGHT_TILE_BYTES, gate)
        add_into(dW, gW.reshape(W.shape))
        add_into(db, gb)
    if not input_grad:
        return None
    shape = tuple(int(d) for d in x_shape)
    W4 = np.ascontiguousarray(W, dtype=dy.dtype)
    return _gemm_fold(dy, W4, np.zeros(shape[1], dy.dtype), shape, geom, TILE_BYTES, gate=gate)
