"""Plain-NumPy reference kernels: the readable definition every fast path is tested against.

Each module's docstring states its op's forward and backward equations.
"""

from .activation import *  # noqa: F401,F403
from .adam import *  # noqa: F401,F403
from .augment import *  # noqa: F401,F403
from .batchnorm import *  # noqa: F401,F403
from .bce import *  # noqa: F401,F403
from .conv2d import *  # noqa: F401,F403
from .conv_transpose2d import *  # noqa: F401,F403
from .dense import dense_backward_data, dense_backward_weight, dense_forward  # noqa: F401
from .dropout import *  # noqa: F401,F403
from .ema import *  # noqa: F401,F403

IMPLEMENTATION = "reference"
