"""Binary cross-entropy with logits on the GPU (bce.cu): fused stable loss and gradient.

Same equations as tinygan.kernels.reference.bce: loss = mean(max(z, 0) - z t + log(1 + exp(-|z|))),
dloss/dz = (sigmoid(z) - t) / n.
"""

from __future__ import annotations

import cupy

from ._common import THREADS, CudaModule, device_array, idx

_MOD = CudaModule("bce.cu", templates=("bce_with_logits",))


def bce_with_logits(logits: cupy.ndarray, targets: cupy.ndarray | float) -> tuple[cupy.ndarray, cupy.ndarray]:
    """Returns (loss, dlogits): the mean loss as a 0-d array and its gradient."""
    op = "bce_with_logits"
    logits = device_array(logits, "logits", op)
    if logits.size == 0:
        raise ValueError(f"{op}: logits are empty")
    # Targets are often a constant (all real or all fake): broadcast them rather than demand a full array.
    targets = cupy.ascontiguousarray(cupy.broadcast_to(cupy.asarray(targets, dtype=logits.dtype), logits.shape))
    loss = cupy.empty((), dtype=logits.dtype)
    dlogits = cupy.empty_like(logits)
    _MOD.get(op, logits.dtype)((1,), (THREADS,), (logits, targets, loss, dlogits, idx(logits.size)))
    return loss, dlogits
