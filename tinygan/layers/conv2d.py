"""Conv2d: 2-D convolution over NCHW images (see tinygan.kernels.reference.conv2d for the im2col equations)."""

from __future__ import annotations

from typing import Any

import numpy as np

from tinygan.backend import kernels_for
from tinygan.init import glorot_uniform, make_rng
from tinygan.layers.base import Layer

__all__ = ["Conv2d"]


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _pair(value: Any, what: str, minimum: int, layer: str) -> tuple[int, int]:
    """An int or an (h, w) pair of ints, each >= minimum, as a pair of Python ints (the kernels take pairs)."""
    pair = (value, value) if _is_int(value) else tuple(value) if isinstance(value, (tuple, list)) else ()
    if len(pair) != 2 or not all(_is_int(v) for v in pair):
        raise ValueError(f"{layer}: {what} must be an int or a pair of ints, got {value!r}")
    if min(pair) < minimum:
        raise ValueError(f"{layer}: {what} must be >= {minimum}, got {value!r}")
    return int(pair[0]), int(pair[1])


def _channels(value: Any, what: str, layer: str) -> int:
    if not _is_int(value) or value < 1:
        raise ValueError(f"{layer}: {what} must be a positive int, got {value!r}")
    return int(value)


def set_geometry(
    layer: Layer, in_channels: Any, out_channels: Any, kernel_size: Any, stride: Any, padding: Any
) -> None:
    """Check and store the arguments both convolution layers share, as ints and (h, w) pairs."""
    name = type(layer).__name__
    layer.in_channels = _channels(in_channels, "in_channels", name)
    layer.out_channels = _channels(out_channels, "out_channels", name)
    layer.kernel_size = _pair(kernel_size, "kernel_size", 1, name)
    layer.stride = _pair(stride, "stride", 1, name)
    layer.padding = _pair(padding, "padding", 0, name)


class Conv2d(Layer):
    """2-D convolution (cross-correlation, as in PyTorch) with a bias per output channel.

    Parameters ``W`` (out_channels, in_channels, kh, kw) and ``b`` (out_channels,). For x (N, C, H, W)
    zero-padded by ``padding`` into xp, the output has ``Ho = (H + 2 ph - kh) // sh + 1`` rows (likewise Wo)::

        y[n, o, oh, ow] = b[o] + sum_{c, i, j} W[o, c, i, j] xp[n, c, oh sh + i, ow sw + j]

    computed as ``W.reshape(O, -1) @ im2col(x)``. Backward, with dy_mat = dy as an (O, N Ho Wo) matrix::

        dW = dy_mat @ cols.T        db[o] = sum_{n, oh, ow} dy[n, o, oh, ow]
        dx = col2im(W.reshape(O, -1).T @ dy_mat)

    where col2im sums each input pixel's contributions from every window that covered it.
    ``kernel_size``, ``stride`` and ``padding`` take an int or an (h, w) pair.

    Initialization: Glorot-uniform weights with fan_in = C kh kw and fan_out = O kh kw, zero biases.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        rng: np.random.Generator | int | None = None,
        dtype: Any = np.float32,
    ) -> None:
        super().__init__()
        set_geometry(self, in_channels, out_channels, kernel_size, stride, padding)
        shape = (self.out_channels, self.in_channels, *self.kernel_size)
        self.params["W"] = glorot_uniform(make_rng(rng), shape, layout="conv").astype(dtype)
        self.params["b"] = np.zeros(self.out_channels, dtype=dtype)
        self.zero_grad()

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}"
        )

    def output_shape(self, input_shape: tuple) -> tuple:
        N, _, H, W = input_shape
        out = []
        for size, k, s, p, axis in zip((H, W), self.kernel_size, self.stride, self.padding, ("height", "width")):
            if size + 2 * p < k:
                raise ValueError(
                    f"{self.name}: input {axis} {size} with padding {p} is smaller than the kernel {k} "
                    f"(input shape {tuple(input_shape)})"
                )
            out.append((size + 2 * p - k) // s + 1)
        return (N, self.out_channels, *out)

    def forward(self, x: Any, training: bool = True) -> Any:
        self.check_input(x, (None, self.in_channels, None, None))
        out_shape = self.output_shape(tuple(x.shape))
        K = kernels_for(x)
        y, cols = K.conv2d_forward(x, self.params["W"], self.params["b"], self.stride, self.padding)
        self.cache = (cols, tuple(x.shape))
        self._out_shape = out_shape
        return y

    def backward(self, dy: Any, param_grads: bool = True, input_grad: bool = True) -> Any:
        cols, x_shape = self.check_grad(dy)
        K = kernels_for(dy)
        W = self.params["W"]
        if param_grads:
            dW, db = K.conv2d_backward_weight(dy, cols, W.shape)
            self.grads["W"] += dW
            self.grads["b"] += db
        return K.conv2d_backward_data(dy, W, x_shape, self.stride, self.padding) if input_grad else None
