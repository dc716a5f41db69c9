"""Dense: the fully connected layer, y = x @ W + b (see tinygan.kernels.reference.dense)."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from tinygan.backend import kernels_for
from tinygan.init import glorot_uniform, make_rng
from tinygan.layers.activation import check_fusion_slope
from tinygan.layers.base import Layer


class DenseCache(NamedTuple):
    """What Dense's backward needs: the input, and with a fused activation its output y and slope."""

    x: Any
    y: Any
    slope: float | None


class Dense(Layer):
    """Fully connected layer.

    Parameters ``W`` (in_features, out_features) and ``b`` (out_features,).
    Forward ``y = x @ W + b``; backward ``dx = dy @ W.T``, ``dW = x.T @ dy``, ``db = sum_n dy``.

    Initialization: Glorot-uniform weights and zero biases (Glorot & Bengio, 2010), as Keras does,
    drawn from ``rng`` (a ``numpy.random.Generator`` or a seed).

    ``forward(x, slope=s)`` fuses a following ReLU (s = 0) or LeakyReLU(s) into the output,
    y = act(x @ W + b), in the kernel's epilogue; ``backward`` then takes dL/dy of that activated output.
    ``Sequential``'s fusion plan does this for a Dense followed by ReLU / LeakyReLU.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        rng: np.random.Generator | int | None = None,
        dtype: Any = np.float32,
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        rng = make_rng(rng)
        self.params["W"] = glorot_uniform(rng, (self.in_features, self.out_features)).astype(dtype)
        self.params["b"] = np.zeros(self.out_features, dtype=dtype)
        self.zero_grad()

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}"

    def output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], self.out_features)

    def forward(self, x: Any, training: bool = True, *, slope: float | None = None) -> Any:
        """y = x @ W + b, or act(x @ W + b) with the fused activation ``slope`` (0: ReLU, s: LeakyReLU(s))."""
        self.check_input(x, (None, self.in_features))
        slope = check_fusion_slope(slope, self.name)
        K = kernels_for(x)
        y = K.dense_forward(x, self.params["W"], self.params["b"], slope)
        self.cache = DenseCache(x, None if slope is None else y, slope)
        self.remember_output((x.shape[0], self.out_features), x)
        return y

    def backward(self, dy: Any, param_grads: bool = True, input_grad: bool = True) -> Any:
        cache = self.check_grad(dy)
        # One op: the activation's gradient, dW and db added into the gradient buffers, dx.
        return kernels_for(dy).dense_backward(
            dy,
            cache.x,
            self.params["W"],
            cache.y,
            cache.slope,
            dW=self.grads["W"] if param_grads else None,
            db=self.grads["b"] if param_grads else None,
            input_grad=input_grad,
        )
