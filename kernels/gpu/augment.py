"""Differentiable augmentation on the GPU (augment.cu): DiffAugment's transforms (Zhao et al., 2020)
with the names, signatures and equations of tinygan.kernels.reference.augment, where they are derived.

The per-sample parameters are CuPy arrays of shape (N,) drawn by the caller (on the device, by
tinygan.gpu_random.PhiloxGenerator inside a captured step): nothing here draws or synchronizes, so
every op can sit in a CUDA graph. Float parameters are used in x's dtype, integer ones as int32.
One kernel per transform serves forward and backward (see augment.cu); contrast is one block per
sample with a fixed-order sum, so its results do not vary from run to run.
"""

from __future__ import annotations

from typing import Any

import cupy
import numpy as np

from ..reference.augment import check_augment_args
from ._common import THREADS, CudaModule, ctype_of, device_array, idx, launch

_MOD = CudaModule(
    "augment.cu",
    templates=("augment_contrast", "augment_parameters"),
    indexed=("augment_add_per_sample", "augment_saturation", "augment_translate", "augment_cutout"),
)

__all__ = [
    "augment_parameters",
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


def augment_parameters(
    u: cupy.ndarray, plan: cupy.ndarray, n_int: int, dtype: Any
) -> tuple[cupy.ndarray, cupy.ndarray]:
    """``(ints, floats)`` from uniforms ``u`` (rows, N) float64 and ``plan`` (rows, 2) float64, both on
    the device, in one launch (the reference's equations; ``plan`` is uploaded once by the caller, so
    that a captured step copies nothing from the host)."""
    op = "augment_parameters"
    for name, arr in (("u", u), ("plan", plan)):
        if not isinstance(arr, cupy.ndarray) or arr.dtype != np.float64:
            raise TypeError(f"tinygan.kernels.gpu.{op}: {name} must be a float64 CuPy array")
    ctype_of(dtype)
    if u.ndim != 2 or plan.shape != (u.shape[0], 2) or not 0 <= n_int <= u.shape[0]:
        raise ValueError(
            f"{op}: expected u (rows, N) and plan (rows, 2) with 0 <= n_int <= rows, received "
            f"u {tuple(u.shape)}, plan {tuple(plan.shape)}, n_int {n_int}"
        )
    rows, n = (int(d) for d in u.shape)
    u, plan = cupy.ascontiguousarray(u), cupy.ascontiguousarray(plan)
    ints = cupy.empty((n_int, n), dtype=np.int32)
    floats = cupy.empty((rows - n_int, n), dtype=dtype)
    launch(_MOD.get(op, dtype), u.size, (u, plan, np.int32(n_int), ints, floats, idx(n), idx(u.size)))
    return ints, floats


def _param(value: Any, name: str, op: str, dtype: Any) -> cupy.ndarray:
    """A per-sample parameter as a C-contiguous CuPy array of ``dtype`` (a no-op when it already is)."""
    if not isinstance(value, cupy.ndarray):
        raise TypeError(
            f"tinygan.kernels.gpu.{op}: {name} must be a CuPy array (on the GPU), received {type(value).__name__}"
        )
    return cupy.ascontiguousarray(value.astype(dtype, copy=False))


def _batch(x: Any, op: str, **params: Any) -> cupy.ndarray:
    x = device_array(x, "x", op)
    check_augment_args(op, x, *params.items())
    return x


def _brightness(op: str, x: Any, shift: Any) -> cupy.ndarray:
    x = _batch(x, op, shift=shift)
    y = cupy.empty_like(x)
    k = x.size // x.shape[0] if x.shape[0] else 0
    launch(
        _MOD.get_for("augment_add_per_sample", x.dtype, x),
        x.size,
        (x, _param(shift, "shift", op, x.dtype), y, idx(k), idx(x.size)),
    )
    return y


def brightness_forward(x: cupy.ndarray, shift: cupy.ndarray) -> cupy.ndarray:
    return _brightness("brightness_forward", x, shift)


def brightness_backward(dy: cupy.ndarray, shift: cupy.ndarray) -> cupy.ndarray:
    dy = _batch(dy, "brightness_backward", shift=shift)
    return dy.copy()


def _saturation(op: str, x: Any, factor: Any) -> cupy.ndarray:
    x = _batch(x, op, factor=factor)
    n, c, h, w = x.shape
    y = cupy.empty_like(x)
    launch(
        _MOD.get_for("augment_saturation", x.dtype, x),
        n * h * w,
        (x, _param(factor, "factor", op, x.dtype), y, idx(c), idx(h * w), idx(n * h * w)),
    )
    return y


def saturation_forward(x: cupy.ndarray, factor: cupy.ndarray) -> cupy.ndarray:
    return _saturation("saturation_forward", x, factor)


def saturation_backward(dy: cupy.ndarray, factor: cupy.ndarray) -> cupy.ndarray:
    return _saturation("saturation_backward", dy, factor)


def _contrast(op: str, x: Any, factor: Any) -> cupy.ndarray:
    x = _batch(x, op, factor=factor)
    y = cupy.empty_like(x)
    n = x.shape[0]
    if x.size == 0:
        return y
    if n > 2**31 - 1:
        raise ValueError(f"{op}: at most 2**31 - 1 samples per launch, received {n}")
    _MOD.get("augment_contrast", x.dtype)(
        (n,), (THREADS,), (x, _param(factor, "factor", op, x.dtype), y, idx(x.size // n))
    )
    return y


def contrast_forward(x: cupy.ndarray, factor: cupy.ndarray) -> cupy.ndarray:
    return _contrast("contrast_forward", x, factor)


def contrast_backward(dy: cupy.ndarray, factor: cupy.ndarray) -> cupy.ndarray:
    return _contrast("contrast_backward", dy, factor)


def _translate(op: str, x: Any, shift_h: Any, shift_w: Any, sign: int) -> cupy.ndarray:
    x = _batch(x, op, shift_h=shift_h, shift_w=shift_w)
    _, c, h, w = x.shape
    out = cupy.empty_like(x)
    launch(
        _MOD.get_for("augment_translate", x.dtype, x),
        x.size,
        (
            x,
            _param(shift_h, "shift_h", op, np.int32),
            _param(shift_w, "shift_w", op, np.int32),
            np.int32(sign),
            out,
            idx(c),
            idx(h),
            idx(w),
            idx(x.size),
        ),
    )
    return out


def translation_forward(x: cupy.ndarray, shift_h: cupy.ndarray, shift_w: cupy.ndarray) -> cupy.ndarray:
    return _translate("translation_forward", x, shift_h, shift_w, 1)


def translation_backward(dy: cupy.ndarray, shift_h: cupy.ndarray, shift_w: cupy.ndarray) -> cupy.ndarray:
    return _translate("translation_backward", dy, shift_h, shift_w, -1)


def _cut(op: str, x: Any, top: Any, left: Any, size: tuple[int, int]) -> cupy.ndarray:
    x = _batch(x, op, top=top, left=left)
    size_h, size_w = (int(s) for s in size)
    _, c, h, w = x.shape
    out = cupy.empty_like(x)
    launch(
        _MOD.get_for("augment_cutout", x.dtype, x),
        x.size,
        (
            x,
            _param(top, "top", op, np.int32),
            _param(left, "left", op, np.int32),
            np.int32(size_h),
            np.int32(size_w),
            out,
            idx(c),
            idx(h),
            idx(w),
            idx(x.size),
        ),
    )
    return out


def cutout_forward(x: cupy.ndarray, top: cupy.ndarray, left: cupy.ndarray, size: tuple[int, int]) -> cupy.ndarray:
    return _cut("cutout_forward", x, top, left, size)


def cutout_backward(dy: cupy.ndarray, top: cupy.ndarray, left: cupy.ndarray, size: tuple[int, int]) -> cupy.ndarray:
    return _cut("cutout_backward", dy, top, left, size)
