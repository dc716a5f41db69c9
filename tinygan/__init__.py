"""tinygan: a from-scratch, autograd-free neural-network layer library that trains GANs.

Every layer's forward and backward pass is written by hand, three times: a NumPy reference
(``tinygan.kernels.reference``), a Numba CPU kernel (``tinygan.kernels.cpu``) and a CuPy GPU
kernel (``tinygan.kernels.gpu``).
"""

from pathlib import Path as _Path

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
