"""Plain-NumPy reference kernels: the readable definition every fast path is tested against.

Each module's docstring states its op's forward and backward equations. ``OPS`` names the kernel
contract: every kernel set (reference, Numba ``cpu``, CUDA ``gpu``) exports these ops with the same
parameters (tests/test_kernel_contract.py). Convolution sizes and argument checks live in
``conv_geometry``, shared by all three sets and the layers.
"""

from . import activation, adam, augment, batchnorm, bce, conv2d, conv_transpose2d, dropout, ema, upsample
from .activation import *  # noqa: F401,F403
from .adam import *  # noqa: F401,F403
from .augment import *  # noqa: F401,F403
from .batchnorm import *  # noqa: F401,F403
from .bce import *  # noqa: F401,F403
from .conv2d import *  # noqa: F401,F403
from .conv_transpose2d import *  # noqa: F401,F403
from .dense import dense_backward, dense_backward_data, dense_backward_weight, dense_forward  # noqa: F401
from .dropout import *  # noqa: F401,F403
from .ema import *  # noqa: F401,F403
from .upsample import *  # noqa: F401,F403

IMPLEMENTATION = "reference"

OPS: tuple[str, ...] = (
    *activation.__all__,
    *adam.__all__,
    *augment.__all__,
    *batchnorm.__all__,
    *bce.__all__,
    *conv2d.__all__,
    *conv_transpose2d.__all__,
    "dense_forward",
    "dense_backward_data",
    "dense_backward_weight",
    "dense_backward",
    *dropout.__all__,
    *ema.__all__,
    *upsample.__all__,
)

# What ``from tinygan.kernels.reference import *`` gives (the Numba set starts from it): the ops, not the modules.
__all__ = [*OPS, "OPS", "IMPLEMENTATION"]
