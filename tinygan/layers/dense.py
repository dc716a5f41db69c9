"""Dense: the fully connected layer, y = x @ W + b (see tinygan.kernels.reference.dense)."""

from __future__ import annotations

from typing import Any

import numpy as np

from tinygan.backend import kernels_for
from tinygan.init import glorot_uniform, make_rng
from tinygan.layers.base import Layer


class Dense(Layer):
    """Fully connected layer.

    Parameters ``W`` (in_features, out_features) and ``b`` (out_features,).
    Forward ``y = x @ W + b``; backward ``dx = dy @ W.T``, ``dW = x.T @ dy``, ``db = sum_n dy``.

    Initialization: Glorot-uniform weights and zero biases (Glorot & Bengio, 2010), as Keras does,
    drawn from ``rng`` (a ``numpy.random.Generator`` or a seed).
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

    def forward(self, x: Any, training: bool = True) -> Any:
        self.check_input(x, (None, self.in_features))
        K = kernels_for(x)
        self.cache = x
        self.remember_output((x.shape[0], self.out_features), x)
        return K.dense_forward(x, self.params["W"], self.params["b"])

    def backward(self, dy: Any, param_grads: bool = True, input_grad: bool = True) -> Any:
        x = self.check_grad(dy)
        K = kernels_for(dy)
        if param_grads:
            dW, db = K.dense_backward_weight(dy, x)
            self.grads["W"] += dW
            self.grads["b"] += db
        return K.dense_backward_data(dy, self.params["W"]) if input_grad else None
