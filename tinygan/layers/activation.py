"""Activation layers over tinygan.kernels.*.activation (equations in the reference's docstring).

Each caches the one tensor its derivative needs: the output y for ReLU, Sigmoid and Tanh (whose
derivatives are functions of y), the input x for LeakyReLU.
"""

from __future__ import annotations

from typing import Any

from tinygan.backend import kernels_for
from tinygan.layers.base import Layer

__all__ = ["ReLU", "LeakyReLU", "Sigmoid", "Tanh"]


class _Elementwise(Layer):
    """Shared plumbing: check the input, remember the shape for the gradient check."""

    def _begin(self, x: Any) -> Any:
        self.check_input(x)
        self.remember_output(x.shape, x)
        return kernels_for(x)


class ReLU(_Elementwise):
    """y = max(x, 0)."""

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
