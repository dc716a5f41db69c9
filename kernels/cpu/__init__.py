"""Numba-jitted CPU kernels, the default on the CPU.

Starts from the reference namespace and overrides it op by op with jitted versions. Ops where
NumPy already runs optimized code stay the reference's (Dense's matrix products stay NumPy's BLAS, with
the bias, activation and bias gradient as jitted passes in ``fused``).
"""

import os

# Numba's OpenMP threads busy-wait between parallel regions by default; on a small machine they then
# fight NumPy's BLAS threads for the same cores, and a dense-GAN step measured 30x slower (760 ms
# instead of 26 ms on 2 cores). OpenMP reads this when Numba first starts its threads, after this import.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from ..reference import *  # noqa: E402,F401,F403
from ._cache import kernel_cache  # noqa: E402

# Numba chooses each cached function's folder when the decorator runs, i.e. during these imports.
with kernel_cache():
    from .activation import *  # noqa: E402,F401,F403
    from .adam import *  # noqa: E402,F401,F403
    from .augment import *  # noqa: E402,F401,F403
    from .batchnorm import *  # noqa: E402,F401,F403
    from .bce import *  # noqa: E402,F401,F403
    from .conv import *  # noqa: E402,F401,F403
    from .dropout import *  # noqa: E402,F401,F403
    from .ema import *  # noqa: E402,F401,F403
    from .fused import *  # noqa: E402,F401,F403
    from .upsample import *  # noqa: E402,F401,F403

IMPLEMENTATION = "numba"
