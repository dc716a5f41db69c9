"""Activations on the GPU: one elementwise CUDA kernel per pass (activation.cu).

Same equations as tinygan.kernels.reference.activation:
relu y = max(x, 0), dx = dy * [y > 0]; leaky_relu y = x if x > 0 else a*x, dx = dy * (1 if x > 0 else a);
sigmoid y = 1 / (1 + exp(-x)), dx = dy * y * (1 - y); tanh dx = dy * (1 - y^2).

``activate_`` and ``activation_grad`` (not contract ops) are the weight ops' fused epilogue as a pass of its
own, for the routes whose product kernel does not apply it (equations in reference.activation.activate).
"""

from __future__ import annotations

import cupy

from ._common import CudaModule, device_array, idx, launch, same_dtype, scalar

_MOD = CudaModule(
    "activation.cu",
    templates=(
        "relu_forward",
        "relu_backward",
        "leaky_relu_forward",
        "leaky_relu_backward",
        "sigmoid_forward",
        "sigmoid_backward",
        "tanh_forward",
        "tanh_backward",
        "fused_act",
        "fused_act_grad",
    ),
)


def _unary(name: str, x: cupy.ndarray, *extra: float) -> cupy.ndarray:
    x = device_array(x, "x", name)
    y = cupy.empty_like(x)
    launch(_MOD.get(name, x.dtype), x.size, (x, y, *(scalar(x.dtype, e) for e in extra), idx(x.size)))
    return y


def _binary(name: str, dy: cupy.ndarray, saved: cupy.ndarray, saved_name: str, *extra: float) -> cupy.ndarray:
    dy, saved = device_array(dy, "dy", name), device_array(saved, saved_name, name)
    same_dtype(name, dy, **{saved_name: saved})
    if dy.shape != saved.shape:
        raise ValueError(f"{name}: dy of shape {tuple(dy.shape)} does not match {saved_name} {tuple(saved.shape)}")
    dx = cupy.empty_like(dy)
    launch(_MOD.get(name, dy.dtype), dy.size, (dy, saved, dx, *(scalar(dy.dtype, e) for e in extra), idx(dy.size)))
    return dx


def relu_forward(x: cupy.ndarray) -> cupy.ndarray:
    return _unary("relu_forward", x)


def relu_backward(dy: cupy.ndarray, y: cupy.ndarray) -> cupy.ndarray:
    return _binary("relu_backward", dy, y, "y")


def leaky_relu_forward(x: cupy.ndarray, negative_slope: float) -> cupy.ndarray:
    return _unary("leaky_relu_forward", x, negative_slope)


def leaky_relu_backward(dy: cupy.ndarray, x: cupy.ndarray, negative_slope: float) -> cupy.ndarray:
    return _binary("leaky_relu_backward", dy, x, "x", negative_slope)


def sigmoid_forward(x: cupy.ndarray) -> cupy.ndarray:
    return _unary("sigmoid_forward", x)


def sigmoid_backward(dy: cupy.ndarray, y: cupy.ndarray) -> cupy.ndarray:
    return _binary("sigmoid_backward", dy, y, "y")


def tanh_forward(x: cupy.ndarray) -> cupy.ndarray:
    return _unary("tanh_forward", x)


def tanh_backward(dy: cupy.ndarray, y: cupy.ndarray) -> cupy.ndarray:
    return _binary("tanh_backward", dy, y, "y")


def activate_(y: cupy.ndarray, slope: float | None) -> cupy.ndarray:
    """In place: y = act(y), the fused epilogue's activation (nothing for slope None). y must be contiguous."""
    if slope is not None:
        launch(_MOD.get("fused_act", y.dtype), y.size, (y, scalar(y.dtype, slope), idx(y.size)))
    return y


def activation_grad(dy: cupy.ndarray, y: cupy.ndarray | None, slope: float | None, op: str) -> cupy.ndarray:
    """dz = dy * act'(y) from the fused forward's output y (dy itself for slope None); ``op`` names the caller."""
    if slope is None:
        return dy
    if y is None:
        raise ValueError(f"{op}: slope={slope} needs y, the fused forward's output")
    return _binary("fused_act_grad", dy, y, "y", slope)
