"""tinygan: a from-scratch, autograd-free neural-network layer library that trains GANs.

Every layer's forward and backward pass is written by hand, three times: a NumPy reference
(``tinygan.kernels.reference``), a Numba CPU kernel (``tinygan.kernels.cpu``) and a CuPy GPU
kernel (``tinygan.kernels.gpu``).
"""

from tinygan.layers import *  # noqa: F401,F403
from tinygan.layers import __all__ as _layers_all

__version__ = "0.1.0"
__all__ = [*_layers_all]
