"""Plain-NumPy reference kernels: the readable definition every fast path is tested against.

Each module's docstring states its op's forward and backward equations.
"""

from .dense import dense_backward_data, dense_backward_weight, dense_forward  # noqa: F401

IMPLEMENTATION = "reference"
