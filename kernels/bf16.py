"""bfloat16 as 16-bit integer bits on the host (precision "bf16"; the host's half of ``to_bf16`` / ``from_bf16``
in kernels/gpu/_common.cu).

CuPy has no bfloat16 dtype, so tinygan stores bfloat16 GEMM operands as the top 16 bits of a float32 in uint16
arrays (``kernels.gpu._common.BF16``). These NumPy functions round and widen the very same way as the device:
to nearest, ties to even, a NaN kept as a quiet NaN. Pure NumPy (no CuPy), for the GPU emulator, the kernel
harness's references and tests.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def to_bf16(values: Any) -> np.ndarray:
    """float32 values as bfloat16 bits (uint16), rounded to nearest, ties to even; NaN stays a quiet NaN."""
    u = np.asarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
    bits = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) & 0xFFFF
    bits = np.where((u & 0x7FFFFFFF) > 0x7F800000, ((u >> 16) | 0x40) & 0xFFFF, bits)
    return bits.astype(np.uint16)


def from_bf16(bits: Any) -> np.ndarray:
    """What bfloat16 bits stand for, as float32 (exactly: bfloat16 is float32 with the low 16 bits zero)."""
    return (np.asarray(bits).astype(np.uint32) << 16).view(np.float32)
