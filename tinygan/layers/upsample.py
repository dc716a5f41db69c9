"""Nearest-neighbour upsampling over tinygan.kernels.*.upsample (equations in the reference's docstring)."""

from __future__ import annotations

from typing import Any

from tinygan.backend import kernels_for
from tinygan.layers.base import Layer

__all__ = ["Upsample"]


class Upsample(Layer):
    """(N, C, H, W) -> (N, C, s H, s W), each pixel copied into an s x s block (PyTorch's
    ``nn.Upsample(scale_factor=s, mode="nearest")``). No parameters; backward sums each block's gradient.
    With a stride-1 Conv2d after it, the generator's "resize-convolution" (Odena et al., 2016)."""

    def __init__(self, scale_factor: int = 2) -> None:
        super().__init__()
        if isinstance(scale_factor, bool) or int(scale_factor) != scale_factor or scale_factor < 1:
            raise ValueError(f"Upsample: scale_factor must be a positive integer, received {scale_factor!r}")
        self.scale_factor = int(scale_factor)

    def extra_repr(self) -> str:
        return f"scale_factor={self.scale_factor}"

    def output_shape(self, input_shape: tuple) -> tuple:
        n, c, h, w = input_shape
        s = self.scale_factor
        return (n, c, None if h is None else h * s, None if w is None else w * s)

    def forward(self, x: Any, training: bool = True) -> Any:
        self.check_input(x)
        if x.ndim != 4:
            raise ValueError(f"{self.name}: expected input of shape (N, C, H, W), received {tuple(x.shape)}")
        s = self.scale_factor
        self.cache = tuple(x.shape)
        self.remember_output((x.shape[0], x.shape[1], x.shape[2] * s, x.shape[3] * s), x)
        return kernels_for(x).upsample_nearest_forward(x, s)

    def backward(self, dy: Any, param_grads: bool = True, input_grad: bool = True) -> Any:
        self.check_grad(dy)
        return kernels_for(dy).upsample_nearest_backward(dy, self.scale_factor) if input_grad else None
