"""Numba differentiable augmentation (DiffAugment, Zhao et al., 2020): same names, signatures and
equations as tinygan.kernels.reference.augment, where they are derived.

Each transform is one pass over the batch, parallel over samples (the colour transforms need a
per-pixel or per-sample mean first; contrast's per-sample means come from NumPy's pairwise sum).
Means and mixes run in float64 and are rounded once on store. Saturation and contrast are
symmetric linear maps, so their backward is the forward's core applied to dy; translation's
backward is the translation by minus the shifts; cutout's is the same mask.
"""

import numpy as np
from numba import njit, prange

from ..reference.augment import check_augment_args
from .activation import _launch

__all__ = [
    "brightness_forward",
    "brightness_backward",
    "saturation_forward",
    "saturation_backward",
    "contrast_forward",
    "contrast_backward",
    "translation_forward",
    "translation_backward",
    "cutout_forward",
    "cutout_backward",
]


@njit(parallel=True, cache=True)
def _add_per_sample(x, shift, y):
    n_samples, per_sample = x.shape[0], x.shape[1]
    for n in prange(n_samples):
        b = np.float64(shift[n])
        for k in range(per_sample):
            y[n, k] = x[n, k] + b


@njit(parallel=True, cache=True)
def _saturation(x, factor, y):
    # x, y: (N, C, S). Per pixel: y = (x - mean_c x) f + mean_c x. The channel sums go into a row of
    # per-pixel accumulators, so the inner loops run over independent pixels (and vectorize); a
    # per-pixel running sum would be one long chain of dependent additions.
    n_samples, channels, pixels = x.shape
    for n in prange(n_samples):
        f = np.float64(factor[n])
        mu = np.zeros(pixels)
        for c in range(channels):
            for s in range(pixels):
                mu[s] += x[n, c, s]
        for s in range(pixels):
            mu[s] /= channels
        for c in range(channels):
            for s in range(pixels):
                y[n, c, s] = (x[n, c, s] - mu[s]) * f + mu[s]


@njit(parallel=True, cache=True)
def _mix_with_mean(x, mean, factor, y):
    # x, y: (N, K). Per sample: y = (x - mean) f + mean, the means given (float64).
    n_samples, per_sample = x.shape
    for n in prange(n_samples):
        f, mu = np.float64(factor[n]), mean[n]
        for k in range(per_sample):
            y[n, k] = (x[n, k] - mu) * f + mu


@njit(parallel=True, cache=True)
def _shift(src, shift_h, shift_w, sign, out):
    # out[n, c, i, j] = src[n, c, i + sign*dh, j + sign*dw], zero outside.
    n_samples, channels, h, w = src.shape
    for n in prange(n_samples):
        dh, dw = sign * shift_h[n], sign * shift_w[n]
        for c in range(channels):
            for i in range(h):
                si = i + dh
                for j in range(w):
                    sj = j + dw
                    if 0 <= si < h and 0 <= sj < w:
                        out[n, c, i, j] = src[n, c, si, sj]
                    else:
                        out[n, c, i, j] = 0.0


@njit(parallel=True, cache=True)
def _cutout(src, top, left, size_h, size_w, out):
    n_samples, channels, h, w = src.shape
    for n in prange(n_samples):
        t, lft = top[n], left[n]
        for c in range(channels):
            for i in range(h):
                for j in range(w):
                    inside = t <= i < t + size_h and lft <= j < lft + size_w
                    out[n, c, i, j] = 0.0 if inside else src[n, c, i, j]


def _samples(x):
    """x as a C-contiguous (N, C*H*W) array and an output of the same shape and dtype."""
    x2 = np.ascontiguousarray(x).reshape(x.shape[0], -1)
    return x2, np.empty_like(x2)


def _floats(v, x):
    # Rounded to x's dtype first, as the reference does, then widened for the float64 arithmetic.
    return np.ascontiguousarray(np.asarray(v, dtype=x.dtype), dtype=np.float64)


def _ints(v):
    return np.ascontiguousarray(v, dtype=np.int64)


def _brightness(op, x, shift):
    check_augment_args(op, x, ("shift", shift))
    x2, y = _samples(x)
    _launch(_add_per_sample, x.size, "elementwise", x2, _floats(shift, x), y)
    return y.reshape(x.shape)


def brightness_forward(x, shift):
    return _brightness("brightness_forward", x, shift)


def brightness_backward(dy, shift):
    check_augment_args("brightness_backward", dy, ("shift", shift))
    return np.array(dy, copy=True)


def _saturation_apply(op, x, factor):
    check_augment_args(op, x, ("factor", factor))
    x3 = np.ascontiguousarray(x).reshape(x.shape[0], x.shape[1], -1)
    y = np.empty_like(x3)
    _launch(_saturation, x.size, "elementwise", x3, _floats(factor, x), y)
    return y.reshape(x.shape)


def saturation_forward(x, factor):
    return _saturation_apply("saturation_forward", x, factor)


def saturation_backward(dy, factor):
    return _saturation_apply("saturation_backward", dy, factor)


def _contrast_apply(op, x, factor):
    check_augment_args(op, x, ("factor", factor))
    x2, y = _samples(x)
    # The per-sample means by NumPy's pairwise float64 sum: a jitted loop sums sequentially, one
    # dependent addition after the other, three times slower here (and less accurate).
    mean = x2.mean(axis=1, dtype=np.float64)
    _launch(_mix_with_mean, x.size, "elementwise", x2, mean, _floats(factor, x), y)
    return y.reshape(x.shape)


def contrast_forward(x, factor):
    return _contrast_apply("contrast_forward", x, factor)


def contrast_backward(dy, factor):
    return _contrast_apply("contrast_backward", dy, factor)


def _translate(op, x, shift_h, shift_w, sign):
    check_augment_args(op, x, ("shift_h", shift_h), ("shift_w", shift_w))
    x = np.ascontiguousarray(x)
    out = np.empty_like(x)
    _launch(_shift, x.size, "elementwise", x, _ints(shift_h), _ints(shift_w), sign, out)
    return out


def translation_forward(x, shift_h, shift_w):
    return _translate("translation_forward", x, shift_h, shift_w, 1)


def translation_backward(dy, shift_h, shift_w):
    return _translate("translation_backward", dy, shift_h, shift_w, -1)


def _cut(op, x, top, left, size):
    check_augment_args(op, x, ("top", top), ("left", left))
    size_h, size_w = (int(s) for s in size)
    x = np.ascontiguousarray(x)
    out = np.empty_like(x)
    _launch(_cutout, x.size, "elementwise", x, _ints(top), _ints(left), size_h, size_w, out)
    return out


def cutout_forward(x, top, left, size):
    return _cut("cutout_forward", x, top, left, size)


def cutout_backward(dy, top, left, size):
    return _cut("cutout_backward", dy, top, left, size)
