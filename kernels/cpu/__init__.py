"""Numba-jitted CPU kernels, the default on the CPU.

Starts from the reference namespace and overrides it op by op with jitted versions. Ops where
NumPy already runs optimized code (the matrix products of Dense) stay the reference's.
"""

from ..reference import *  # noqa: F401,F403
from .activation import *  # noqa: F401,F403
from .adam import *  # noqa: F401,F403
from .batchnorm import *  # noqa: F401,F403
from .bce import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .dropout import *  # noqa: F401,F403

IMPLEMENTATION = "numba"
