"""Division by a value fixed for a kernel launch, as a multiply-high and a shift (the host's half).

A 32-bit integer division by a runtime value is a sequence of about 25 instructions on NVIDIA GPUs; kernels
that decode an index into coordinates do two or three of them per element and little else, so the division
sets their speed (ncu of col2im in the DCGAN step on an H200: 79% of the SMs' issue rate, 12-34% of DRAM).
For a divisor d known before the launch, n // d for every 0 <= n < 2**31 is

    n // d == umulhi(n, mul) >> shift        p = 31 + ceil(log2 d),  mul = ceil(2**p / d),  shift = p - 32

(Granlund and Montgomery, 1994, "Division by invariant integers using multiplication"; CUTLASS's FastDivmod),
with d == 1 passed through. The device half is ``fast_div`` in kernels/gpu/_common.cu. Pure Python (no CuPy),
so the CPU test suite checks the identity on its own.
"""

from __future__ import annotations

import numpy as np

INT_LIMIT = 2**31


def fast_divisor(d: int) -> tuple[int, int, int]:
    """``(d, mul, shift)`` with ``n // d == (n * mul >> 32) >> shift`` for every 0 <= n < 2**31; for d == 1,
    ``mul`` is 0 and the kernel passes n through."""
    if not 1 <= d < INT_LIMIT:
        raise ValueError(f"fast_divisor: expected 1 <= d < 2**31, received {d}")
    if d == 1:
        return 1, 0, 0
    p = 31 + (d - 1).bit_length()  # ceil(log2 d) for d >= 2
    return d, ((1 << p) + d - 1) // d, p - 32


def fast_div_args(*divisors: int) -> tuple[np.uint32, ...]:
    """The ``(mul, shift)`` kernel arguments of ``fast_div`` for each divisor, in order.

    A divisor of 2**31 or more can only occur in a launch of a kernel's 64-bit instantiation, which divides
    plainly and ignores these arguments, and a divisor 0 in a launch over no elements (an empty batch), which
    divides nothing: both get (0, 0)."""
    out: list[np.uint32] = []
    for d in divisors:
        _, mul, shift = fast_divisor(d) if 1 <= d < INT_LIMIT else (d, 0, 0)
        out += [np.uint32(mul), np.uint32(shift)]
    return tuple(out)
