"""Dropout on the GPU (dropout.cu): y = x * mask / (1 - p), dx = dy * mask / (1 - p).

Forward and backward are the same kernel: both scale the kept entries and zero the rest.
The mask is drawn elsewhere (tinygan.gpu_random.PhiloxGenerator.bernoulli draws one on the GPU).
"""

from __future__ import annotations

import cupy

from ._common import CudaModule, device_array, idx, launch, scalar

_MOD = CudaModule("dropout.cu", templates=("dropout_apply",))


def _apply(op: str, src: cupy.ndarray, mask: cupy.ndarray, p: float) -> cupy.ndarray:
    src = device_array(src, "input", op)
    if not isinstance(mask, cupy.ndarray):
        raise TypeError(f"tinygan.kernels.gpu.{op}: mask must be a CuPy array, received {type(mask).__name__}")
    if mask.shape != src.shape:
        raise ValueError(f"{op}: mask of shape {tuple(mask.shape)} does not match {tuple(src.shape)}")
    if not 0.0 <= p < 1.0:
        raise ValueError(f"{op}: p must be in [0, 1), got {p}")
    if mask.dtype == cupy.bool_ or mask.dtype == cupy.uint8:
        mask = cupy.ascontiguousarray(mask).view(cupy.uint8)
    else:
        mask = (mask != 0).view(cupy.uint8)
    dst = cupy.empty_like(src)
    launch(
        _MOD.get("dropout_apply", src.dtype),
        src.size,
        (src, mask, dst, scalar(src.dtype, 1.0 / (1.0 - p)), idx(src.size)),
    )
    return dst


def dropout_forward(x: cupy.ndarray, mask: cupy.ndarray, p: float) -> cupy.ndarray:
    return _apply("dropout_forward", x, mask, p)


def dropout_backward(dy: cupy.ndarray, mask: cupy.ndarray, p: float) -> cupy.ndarray:
    return _apply("dropout_backward", dy, mask, p)
