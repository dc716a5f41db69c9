"""Dropout: inverted dropout (Srivastava et al., 2014); see tinygan.kernels.reference.dropout."""

from __future__ import annotations

from typing import Any

import numpy as np

from tinygan.backend import device_of, kernels_for, to_device
from tinygan.init import make_rng
from tinygan.layers.base import Layer

__all__ = ["Dropout"]


class Dropout(Layer):
    """Zero each unit with probability ``p`` in training and scale the survivors by 1/(1-p);
    the identity when ``training=False``.

    The mask comes from ``rng`` (a ``numpy.random.Generator`` or a seed), so a seed fixes every
    mask of a run. Resetting ``layer.rng.bit_generator.state`` replays the same masks.
    """

    def __init__(self, p: float = 0.5, rng: np.random.Generator | int | None = None) -> None:
        super().__init__()
        p = float(p)
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout: p must satisfy 0 <= p < 1, received {p}")
        self.p = p
        self.rng = make_rng(rng)

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def _draw_mask(self, x: Any) -> Any:
        """Keep mask (bool, True = kept) for ``x``, on x's device.

        Drawn on the host in float64 so that a seed gives the same mask whatever x's dtype or
        device; the GPU backend may replace this method with an on-device generator.
        """
        keep = self.rng.random(x.shape) >= self.p
        return to_device(keep, device_of(x))

    def forward(self, x: Any, training: bool = True) -> Any:
        self.check_input(x)
        self._out_shape = tuple(x.shape)
        if not training or self.p == 0.0:
            # Nothing cached but the fact that backward is the identity too.
            self.cache = "identity"
            return x
        mask = self._draw_mask(x)
        self.cache = mask
        return kernels_for(x).dropout_forward(x, mask, self.p)

    def backward(self, dy: Any, param_grads: bool = True, input_grad: bool = True) -> Any:
        mask = self.check_grad(dy)
        if not input_grad:
            return None
        if isinstance(mask, str):
            return dy
        return kernels_for(dy).dropout_backward(dy, mask, self.p)
