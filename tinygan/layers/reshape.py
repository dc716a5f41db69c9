"""Flatten and Reshape: change the per-sample shape, keep the batch axis. The backward reshapes
the gradient back to the input's shape."""

from __future__ import annotations

import math
from typing import Any

from tinygan.layers.base import Layer

__all__ = ["Flatten", "Reshape"]


class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1 * d2 * ...)."""

    def output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], math.prod(input_shape[1:]))

    def forward(self, x: Any, training: bool = True) -> Any:
        self.check_input(x)
        if x.ndim < 2:
            raise ValueError(f"{self.name}: expected input of shape (N, ...), received {tuple(x.shape)}")
        self.cache = tuple(x.shape)
        self.remember_output((x.shape[0], math.prod(x.shape[1:])), x)
        return x.reshape(self._out_shape)

    def backward(self, dy: Any, param_grads: bool = True, input_grad: bool = True) -> Any:
        in_shape = self.check_grad(dy)
        return dy.reshape(in_shape) if input_grad else None


class Reshape(Layer):
    """(N, ...) -> (N, *shape); ``shape`` excludes the batch axis: ``Reshape(128, 7, 7)``."""

    def __init__(self, *shape: int) -> None:
        super().__init__()
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        if not shape or any(int(d) != d or d <= 0 for d in shape):
            raise ValueError(f"Reshape: target shape must be positive ints (batch axis excluded), received {shape}")
        self.shape = tuple(int(d) for d in shape)
        self.size = math.prod(self.shape)

    def extra_repr(self) -> str:
        return ", ".join(str(d) for d in self.shape)

    def output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], *self.shape)

    def forward(self, x: Any, training: bool = True) -> Any:
        self.check_input(x)
        if x.ndim < 2 or math.prod(x.shape[1:]) != self.size:
            raise ValueError(
                f"{self.name}: expected input with {self.size} values per sample (to reshape to {self.shape}), "
                f"received shape {tuple(x.shape)}"
            )
        self.cache = tuple(x.shape)
        self.remember_output((x.shape[0], *self.shape), x)
        return x.reshape(self._out_shape)

    def backward(self, dy: Any, param_grads: bool = True, input_grad: bool = True) -> Any:
        in_shape = self.check_grad(dy)
        return dy.reshape(in_shape) if input_grad else None
