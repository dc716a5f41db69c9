"""The GAN training step's own GPU kernels (gan.cu), for tinygan.train.GANTrainer.

Not part of the kernel contract: they do what the CPU loop writes with NumPy indexing,
``concatenate`` and means, in as few launches as possible and without host values that change
between steps (see the notes in gan.cu), so that a whole training step can be captured as one
CUDA graph and replayed.
"""

from __future__ import annotations

from collections.abc import Sequence

import cupy
import numpy as np

from ._common import THREADS, CudaModule, device_array, idx, launch, same_dtype, scalar

_MOD = CudaModule(
    "gan.cu",
    templates=(
        "gather_rows",
        "concat_noisy",
        "label_ranges",
        "d_figures",
        "sum_squares_partial",
        "input_grad_rms",
        "weight_share",
        "step_end",
    ),
)
STEP_FIGURES = 7  # step_end's figures: tinygan.step.FIGURES
_RMS_BLOCKS = 256  # input_grad_rms's first pass: enough blocks to keep an H200's loads in flight


def _int64_vector(x: cupy.ndarray, what: str) -> None:
    if not isinstance(x, cupy.ndarray) or x.dtype != np.int64 or x.ndim != 1 or not x.flags.c_contiguous:
        raise TypeError(f"tinygan.kernels.gpu.gan: {what} must be a contiguous int64 CuPy vector")


def gather_rows(data: cupy.ndarray, perm: cupy.ndarray, pos: cupy.ndarray, out: cupy.ndarray) -> cupy.ndarray:
    """``out[r] = data[perm[(pos[0] * len(out) + r) % len(perm)]]``, read on the device; returns ``out``."""
    data, out = device_array(data, "data", "gather_rows"), device_array(out, "out", "gather_rows")
    same_dtype("gather_rows", data, out=out)
    _int64_vector(perm, "perm")
    _int64_vector(pos, "pos")
    if data.shape[1:] != out.shape[1:] or len(perm) == 0:
        raise ValueError(f"gather_rows: rows of {tuple(data.shape)} do not fit out {tuple(out.shape)}")
    row = int(np.prod(out.shape[1:], dtype=np.int64))
    launch(
        _MOD.get("gather_rows", data.dtype),
        out.size,
        (data, perm, pos, out, idx(out.shape[0]), idx(row), idx(len(perm))),
    )
    return out


def concat_noisy(
    a: cupy.ndarray, b: cupy.ndarray | None, noise: cupy.ndarray | None, sigma: cupy.ndarray | None
) -> cupy.ndarray:
    """``concatenate([a, b]) + sigma[()] * noise`` in one pass (``b`` and the noise term optional);
    ``sigma`` is a 0-d device array, so its value can change between graph replays."""
    a = device_array(a, "a", "concat_noisy")
    b = a[:0] if b is None else device_array(b, "b", "concat_noisy")
    same_dtype("concat_noisy", a, b=b, noise=noise, sigma=sigma)
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"concat_noisy: {tuple(a.shape)} and {tuple(b.shape)} do not stack")
    out = cupy.empty((a.shape[0] + b.shape[0], *a.shape[1:]), dtype=a.dtype)
    has_noise = noise is not None
    if has_noise:
        noise = device_array(noise, "noise", "concat_noisy")
        if noise.shape != out.shape or sigma is None or sigma.size != 1:
            raise ValueError(f"concat_noisy: noise must have shape {tuple(out.shape)} and sigma one entry")
    launch(
        _MOD.get("concat_noisy", a.dtype),
        out.size,
        (
            a,
            b,
            noise if has_noise else a,
            sigma if has_noise else a,
            np.int32(has_noise),
            out,
            idx(a.size),
            idx(b.size),
        ),
    )
    return out


def label_ranges_(t: cupy.ndarray, n: int, real: tuple[float, float], fake: tuple[float, float]) -> cupy.ndarray:
    """In place over uniform draws in [0, 1): the first ``n`` entries to U(real), the rest to U(fake)."""
    t = device_array(t, "t", "label_ranges_")
    s = lambda v: scalar(t.dtype, v)  # noqa: E731
    launch(
        _MOD.get("label_ranges", t.dtype),
        t.size,
        (t, idx(n), idx(t.size), s(real[0]), s(real[1] - real[0]), s(fake[0]), s(fake[1] - fake[0])),
    )
    return t


def d_figures(logits: cupy.ndarray, n: int) -> cupy.ndarray:
    """``[mean sigmoid(logits[:n]), mean sigmoid(logits[n:]), mean(logits[n:] < 0)]`` as a device array."""
    logits = device_array(logits, "logits", "d_figures")
    if not 0 < n < logits.size:
        raise ValueError(f"d_figures: need real and fake logits, got n = {n} of {logits.size}")
    out = cupy.empty(3, dtype=logits.dtype)
    _MOD.get("d_figures", logits.dtype)((1,), (THREADS,), (logits, idx(n), idx(logits.size), out))
    return out


def input_grad_rms(dx: cupy.ndarray, n: int) -> cupy.ndarray:
    """What G receives: ``sqrt(n * sum(dx**2))`` (summed in float64), the RMS over the ``n`` samples of
    ``n * dx[i]``, ``dx`` being d(mean loss)/d(fake); a one-element device array of ``dx``'s dtype."""
    dx = device_array(dx, "dx", "input_grad_rms")
    if n < 1 or dx.shape[0] != n:
        raise ValueError(f"input_grad_rms: expected {n} rows, got shape {tuple(dx.shape)}")
    out = cupy.empty(1, dtype=dx.dtype)
    # A grid that depends only on the size (so the sums' order is the same every step), at most 256 blocks.
    blocks = max(1, min(_RMS_BLOCKS, -(-dx.size // THREADS)))
    partial = cupy.empty(blocks, dtype=np.float64)
    _MOD.get("sum_squares_partial", dx.dtype)((blocks,), (THREADS,), (dx, idx(dx.size), partial))
    _MOD.get("input_grad_rms", dx.dtype)((1,), (THREADS,), (partial, np.int32(blocks), idx(n), out))
    return out


def weight_share(dlogits: cupy.ndarray) -> cupy.ndarray:
    """How evenly the samples share G's step: ``w = |dlogits|``, ``(sum w)**2 / (n * sum w**2)`` (summed
    in float64; 1 where every ``w`` is 0); a one-element device array of ``dlogits``' dtype."""
    dlogits = device_array(dlogits, "dlogits", "weight_share")
    if dlogits.size == 0:
        raise ValueError("weight_share: no logits")
    out = cupy.empty(1, dtype=dlogits.dtype)
    _MOD.get("weight_share", dlogits.dtype)((1,), (THREADS,), (dlogits, idx(dlogits.size), out))
    return out


def step_end(acc: cupy.ndarray, figures: Sequence[cupy.ndarray], pos: cupy.ndarray) -> None:
    """``acc += figures`` (the step's seven 0-d device arrays of one dtype, summed in float64) and ``pos += 1``."""
    if not isinstance(acc, cupy.ndarray) or acc.dtype != np.float64 or acc.shape != (STEP_FIGURES,):
        raise TypeError(f"step_end: acc must be a float64 CuPy array of shape ({STEP_FIGURES},)")
    figures = list(figures)
    if len(figures) != STEP_FIGURES or any(not isinstance(f, cupy.ndarray) or f.size != 1 for f in figures):
        raise TypeError(f"step_end: expected {STEP_FIGURES} one-element CuPy arrays")
    same_dtype("step_end", figures[0], **{f"figures[{i}]": f for i, f in enumerate(figures)})
    _int64_vector(pos, "pos")
    _MOD.get("step_end", figures[0].dtype)((1,), (1,), (acc, *figures, pos))
