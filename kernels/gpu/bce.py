"""Binary cross-entropy with logits on the GPU (bce.cu): fused stable loss and gradient.

Same equations as tinygan.kernels.reference.bce: loss = mean(max(z, 0) - z t + log(1 + exp(-|z|))),
dloss/dz = (sigmoid(z) - t) / n.
"""

from __future__ import annotations

import cupy
import numpy as np

from ._common import THREADS, CudaModule, device_array, idx, scalar

_MOD = CudaModule("bce.cu", templates=("bce_with_logits",))


def bce_with_logits(logits: cupy.ndarray, targets: cupy.ndarray | float) -> tuple[cupy.ndarray, cupy.ndarray]:
    """Returns (loss, dlogits): the mean loss as a 0-d array and its gradient."""
    op = "bce_with_logits"
    logits = device_array(logits, "logits", op)
    if logits.size == 0:
        raise ValueError(f"{op}: logits are empty")
    loss = cupy.empty((), dtype=logits.dtype)
    dlogits = cupy.empty_like(logits)
    if isinstance(targets, cupy.ndarray):
        # Broadcastable targets (a 0-d array, one per row, ...) are expanded to logits' shape.
        t = cupy.ascontiguousarray(cupy.broadcast_to(targets.astype(logits.dtype, copy=False), logits.shape))
        t_const, t_is_const = 0.0, 0
    elif isinstance(targets, (int, float, np.generic)):
        # A constant target stays a kernel argument: no host-to-device copy, so this also works inside
        # a CUDA graph capture.
        t, t_const, t_is_const = logits, float(targets), 1
    else:
        raise TypeError(
            f"tinygan.kernels.gpu.{op}: targets must be a CuPy array or a number, received {type(targets).__name__}"
        )
    _MOD.get(op, logits.dtype)(
        (1,),
        (THREADS,),
        (logits, t, scalar(logits.dtype, t_const), cupy.int32(t_is_const), loss, dlogits, idx(logits.size)),
    )
    return loss, dlogits
