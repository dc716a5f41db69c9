"""Activation layers over tinygan.kernels.*.activation (equations in the reference's docstring).

Each caches the one tensor its derivative needs: the output y for ReLU, Sigmoid and Tanh (whose
derivatives are functions of y), the input x for LeakyReLU.

``fusion_slope`` is what a weight layer needs to apply the activation in its own epilogue (Sequential's
fusion plan, docs/ARCHITECTURE.md): 0.0 for ReLU, the slope for LeakyReLU with a slope >= 0 (the fused
backward reads the sign of y, which is the sign of x only then), None for the others (not fusable).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from tinygan.backend import kernels_for
from tinygan.layers.base import Layer

__all__ = ["ReLU", "LeakyReLU", "Sigmoid", "Tanh", "check_fusion_slope"]


def check_fusion_slope(slope: Any, layer: str) -> float | None:
    """``slope`` as a weight layer's forward takes it (None, or a finite float >= 0), or a ValueError naming
    ``layer``."""
    if slope is None:
        return None
    if (
        isinstance(slope, bool)
        or not isinstance(slope, numbers.Real)
        or not (math.isfinite(float(slope)) and slope >= 0)
    ):
        raise ValueError(f"{layer}: slope (the fused activation) must be None or a finite number >= 0, got {slope!r}")
    return float(slope)


class _Elementwise(Layer):
    """Shared plumbing: check the input, remember the shape for the gradient check."""

    @property
    def fusion_slope(self) -> float | None:
        """The slope a weight layer's epilogue applies in place of this layer; None: not fusable."""
        return None

    def _begin(self, x: Any) -> Any:
        self.check_input(x)
        self.remember_output(x.shape, x)
        return kernels_for(x)


class ReLU(_Elementwise):
    """y = max(x, 0)."""

    @property
    def fusion_slope(self) -> float | None:
        return 0.0

    def forward(self, x: Any, training: bool = True) -> Any:
        y = self._begin(x).relu_forward(x)
        self.cache = y
        return y

    def backward(self, dy: Any, param_grads: bool = True, input_grad: bool = True) -> Any:
        y = self.check_grad(dy)
        return kernels_for(dy).relu_backward(dy, y) if input_grad else None


class LeakyReLU(_Elementwise):
    """y = x for x > 0, negative_slope * x otherwise (Maas et al., 2013). Default slope 0.2, the
    DCGAN discriminator's (Radford et al., 2015), unlike PyTorch's 0.01."""

    def __init__(self, negative_slope: float = 0.2) -> None:
        super().__init__()
        self.negative_slope = float(negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"

    @property
    def fusion_slope(self) -> float | None:
        ok = math.isfinite(self.negative_slope) and self.negative_slope >= 0
        return self.negative_slope if ok else None

    def forward(self, x: Any, training: bool = True) -> Any:
        K = self._begin(x)
        self.cache = x
        return K.leaky_relu_forward(x, self.negative_slope)

    def backward(self, dy: Any, param_grads: bool = True, input_grad: bool = True) -> Any:
        x = self.check_grad(dy)
        return kernels_for(dy).leaky_relu_backward(dy, x, self.negative_slope) if input_grad else None


class Sigmoid(_Elementwise):
    """y = 1 / (1 + exp(-x)), overflow-free for any x.

    As the last layer of a discriminator, train with ``Sequential.forward(x, logits=True)`` and
    ``tinygan.losses.bce_with_logits`` rather than through this layer.
    """

    def forward(self, x: Any, training: bool = True) -> Any:
        y = self._begin(x).sigmoid_forward(x)
        self.cache = y
        return y

    def backward(self, dy: Any, param_grads: bool = True, input_grad: bool = True) -> Any:
        y = self.check_grad(dy)
        return kernels_for(dy).sigmoid_backward(dy, y) if input_grad else None


class Tanh(_Elementwise):
    """y = tanh(x)."""

    def forward(self, x: Any, training: bool = True) -> Any:
        y = self._begin(x).tanh_forward(x)
        self.cache = y
        return y

    def backward(self, dy: Any, param_grads: bool = True, input_grad: bool = True) -> Any:
        y = self.check_grad(dy)
        return kernels_for(dy).tanh_backward(dy, y) if input_grad else None
