"""tinygan: a from-scratch, autograd-free neural-network layer library that trains GANs.

Every layer's forward and backward pass is written by hand, three times: a NumPy reference
(``tinygan.kernels.reference``), a Numba CPU kernel (``tinygan.kernels.cpu``) and a CuPy GPU
kernel (``tinygan.kernels.gpu``).
"""

import os as _os
from pathlib import Path as _Path

# After each matrix product OpenBLAS's idle threads spin for a while and starve the Numba kernels that
# run next on the same cores; a shorter spin made a DCGAN step on 2 cores 19% faster (658 -> 532 ms,
# bench/results). OpenBLAS reads this when NumPy loads it, so it only helps when tinygan is imported
# before NumPy, as the examples and `python -m tinygan...` do; set it yourself to override.
_os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

# In the repository, kernels/ sits beside tinygan/ and installs as tinygan.kernels (package_dir in
# setup.cfg). When tinygan is imported straight from a checkout (python -m pytest, or a script run
# from the repository root), let the package find that folder too.
_checkout_kernels = _Path(__file__).resolve().parent.parent / "kernels"
if not (_Path(__file__).parent / "kernels").is_dir() and (_checkout_kernels / "__init__.py").is_file():
    __path__.append(str(_checkout_kernels.parent))  # noqa: F821

from tinygan.layers import *  # noqa: E402,F401,F403
from tinygan.layers import __all__ as _layers_all  # noqa: E402

__version__ = "0.1.0"
__all__ = [*_layers_all]
