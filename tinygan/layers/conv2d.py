"""Conv2d: 2-D convolution over NCHW images (see tinygan.kernels.reference.conv2d for the im2col equations)."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from tinygan.backend import kernels_for
from tinygan.init import glorot_uniform, make_rng
from tinygan.kernels.reference.conv_geometry import conv2d_output_hw, conv_args
from tinygan.layers.activation import check_fusion_slope
from tinygan.layers.base import Layer

__all__ = ["Conv2d"]


class Conv2dCache(NamedTuple):
    """What Conv2d's backward needs: the forward's kernel cache (im2col(x), or what stands for it), the input
    shape, and with a fused activation the output y and its slope."""

    cols: Any
    x_shape: tuple
    y: Any
    slope: float | None


def _channels(value: Any, what: str, layer: str) -> int:
    if not (isinstance(value, (int, np.integer)) and not isinstance(value, bool)) or value < 1:
        raise ValueError(f"{layer}: {what} must be a positive int, got {value!r}")
    return int(value)


def set_geometry(
    layer: Layer, in_channels: Any, out_channels: Any, kernel_size: Any, stride: Any, padding: Any
) -> None:
    """Check and store the arguments both convolution layers share, as ints and (h, w) pairs
    (the checks are tinygan.kernels.reference.conv_geometry's, shared with the kernels)."""
    name = type(layer).__name__
    layer.in_channels = _channels(in_channels, "in_channels", name)
    layer.out_channels = _channels(out_channels, "out_channels", name)
    layer.kernel_size, layer.stride, layer.padding = conv_args(kernel_size, stride, padding, name)


class Conv2d(Layer):
    """2-D convolution (cross-correlation, as in PyTorch) with a bias per output channel.

    Parameters ``W`` (out_channels, in_channels, kh, kw) and ``b`` (out_channels,). For x (N, C, H, W)
    zero-padded by ``padding`` into xp, the output has ``Ho = (H + 2 ph - kh) // sh + 1`` rows (likewise Wo;
    sizes and checks in tinygan.kernels.reference.conv_geometry: H, W, Ho and Wo must be >= 1)::

        y[n, o, oh, ow] = b[o] + sum_{c, i, j} W[o, c, i, j] xp[n, c, oh sh + i, ow sw + j]

    computed as ``W.reshape(O, -1) @ im2col(x)``. Backward, with dy_mat = dy as an (O, N Ho Wo) matrix::

        dW = dy_mat @ cols.T        db[o] = sum_{n, oh, ow} dy[n, o, oh, ow]
        dx = col2im(W.reshape(O, -1).T @ dy_mat)

    where col2im sums each input pixel's contributions from every window that covered it.
    ``kernel_size``, ``stride`` and ``padding`` take an int or an (h, w) pair.

    Initialization: Glorot-uniform weights with fan_in = C kh kw and fan_out = O kh kw, zero biases.

    ``forward(x, slope=s)`` fuses a following ReLU (s = 0) or LeakyReLU(s) into the output,
    y = act(conv(x) + b), in the kernel's epilogue; ``backward`` then takes dL/dy of that activated output.
    ``Sequential``'s fusion plan does this for a Conv2d followed by ReLU / LeakyReLU.
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
        ho, wo = conv2d_output_hw(input_shape[2:], self.kernel_size, self.stride, self.padding, self.name)
        return (input_shape[0], self.out_channels, ho, wo)

    def forward(self, x: Any, training: bool = True, *, slope: float | None = None) -> Any:
        """y = conv(x) + b, or act(conv(x) + b) with the fused activation ``slope`` (0: ReLU, s: LeakyReLU(s))."""
        self.check_input(x, (None, self.in_channels, None, None))
        slope = check_fusion_slope(slope, self.name)
        out_shape = self.output_shape(tuple(x.shape))
        K = kernels_for(x)
        y, cols = K.conv2d_forward(x, self.params["W"], self.params["b"], self.stride, self.padding, slope)
        self.cache = Conv2dCache(cols, tuple(x.shape), None if slope is None else y, slope)
        self.remember_output(out_shape, x)
        return y

    def backward(self, dy: Any, param_grads: bool = True, input_grad: bool = True) -> Any:
        cache = self.check_grad(dy)
        # One op: the activation's gradient, dW and db added into the gradient buffers, dx.
        return kernels_for(dy).conv2d_backward(
            dy,
            cache.cols,
            self.params["W"],
            cache.x_shape,
            self.stride,
            self.padding,
            cache.y,
            cache.slope,
            dW=self.grads["W"] if param_grads else None,
            db=self.grads["b"] if param_grads else None,
            input_grad=input_grad,
        )
