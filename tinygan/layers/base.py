"""The Layer contract every layer follows.

* ``forward(x, training=True) -> y`` computes the output and keeps, in ``self.cache``,
  exactly what ``backward`` needs.
* ``backward(dy, param_grads=True, input_grad=True) -> dx`` applies the chain rule:
  it returns dL/dx (or None when ``input_grad`` is False) and *adds* dL/dparam into
  ``self.grads``. With ``param_grads=False`` the weight gradients are neither computed
  nor touched: this is how the generator's step backpropagates through a frozen
  discriminator. No layer ever updates its own weights; that is the optimizer's job.
  ``dy`` must match the forward's output in shape, dtype and device (``remember_output`` records it,
  ``check_grad`` checks it): a float64 dy would otherwise promote every gradient below it.
* ``params`` and ``grads`` are dicts with the same keys (``W``, ``b``, ``gamma``, ``beta``);
  ``buffers`` holds state that is saved but not trained (BatchNorm's running statistics).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tinygan.backend import array_module, device_of, to_device

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _shape_str(shape: tuple) -> str:
    return "(" + ", ".join("N" if d is None else str(d) for d in shape) + ")"


class Layer:
    """Base class: parameter bookkeeping, device moves and input checks."""

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}
        self.grads: dict[str, Any] = {}
        self.buffers: dict[str, Any] = {}
        self.cache: Any = None
        self.name: str = type(self).__name__

    # -- the two passes ---------------------------------------------------------------
    def forward(self, x: Any, training: bool = True) -> Any:
        raise NotImplementedError

    def backward(self, dy: Any, param_grads: bool = True, input_grad: bool = True) -> Any:
        raise NotImplementedError

    def __call__(self, x: Any, training: bool = True) -> Any:
        return self.forward(x, training=training)

    def output_shape(self, input_shape: tuple) -> tuple:
        """Shape of the output for an input of ``input_shape`` (batch dimension included)."""
        return input_shape

    # -- parameters ---------------------------------------------------------------------
    def zero_grad(self) -> None:
        for key, value in self.params.items():
            self.grads[key] = array_module(value).zeros_like(value)

    def num_parameters(self) -> int:
        return int(sum(p.size for p in self.params.values()))

    @property
    def device(self) -> str:
        for p in self.params.values():
            return device_of(p)
        return getattr(self, "_device", "cpu")

    @property
    def dtype(self) -> np.dtype | None:
        for p in self.params.values():
            return p.dtype
        return None

    def to(self, device: str) -> Layer:
        """Move parameters, gradients and buffers to ``device`` ("cpu" or "gpu"), in place."""
        for store in (self.params, self.grads, self.buffers):
            for key in store:
                store[key] = to_device(store[key], device)
        self._device = device
        self.cache = None
        return self

    def astype(self, dtype: Any) -> Layer:
        """Convert parameters, gradients and buffers to ``dtype`` (float32 or float64), in place."""
        dtype = np.dtype(dtype)
        if dtype not in FLOAT_DTYPES:
            raise ValueError(f"{self.name}: dtype must be float32 or float64, got {dtype}")
        for store in (self.params, self.grads, self.buffers):
            for key in store:
                store[key] = store[key].astype(dtype)
        self.cache = None
        return self

    # -- checks -------------------------------------------------------------------------
    def check_input(self, x: Any, shape: tuple | None = None, what: str = "input") -> None:
        """Raise ValueError naming this layer unless ``x`` is a float array on the layer's device
        with the layer's dtype and, where given, ``shape`` (None entries match any size)."""
        if not hasattr(x, "shape") or not hasattr(x, "dtype"):
            raise ValueError(f"{self.name}: expected an array as {what}, received {type(x).__name__}")
        if self.params:
            if device_of(x) != self.device:
                raise ValueError(
                    f"{self.name}: {what} is on the {device_of(x)} but the layer's parameters are on the "
                    f"{self.device}; move one of them (layer.to(...) or tinygan.backend.to_device)"
                )
            if x.dtype != self.dtype:
                raise ValueError(f"{self.name}: expected {what} of dtype {self.dtype}, received {x.dtype}")
        elif x.dtype not in FLOAT_DTYPES:
            raise ValueError(f"{self.name}: expected {what} of dtype float32 or float64, received {x.dtype}")
        if shape is not None:
            ok = len(x.shape) == len(shape) and all(e is None or e == r for e, r in zip(shape, x.shape))
            if not ok:
                raise ValueError(
                    f"{self.name}: expected {what} of shape {_shape_str(shape)}, received {tuple(x.shape)}"
                )

    def remember_output(self, shape: tuple, like: Any) -> None:
        """Record, in forward, what backward's ``dy`` must be: an array of ``shape`` with the dtype and
        device of ``like`` (the forward's input, whose dtype and device the output shares)."""
        self._out_shape = tuple(shape)
        self._out_dtype = like.dtype
        self._out_device = device_of(like)

    def check_grad(self, dy: Any) -> Any:
        """Check ``dy`` against the forward output's shape, dtype and device; return the cache.

        A float64 or integer ``dy`` for a float32 layer is refused rather than cast: NumPy would
        silently promote every gradient below it to float64."""
        if self.cache is None:
            raise RuntimeError(f"{self.name}: backward() called before forward()")
        if not hasattr(dy, "shape") or not hasattr(dy, "dtype"):
            raise ValueError(f"{self.name}: expected an array as upstream gradient, received {type(dy).__name__}")
        if device_of(dy) != self._out_device:
            raise ValueError(
                f"{self.name}: expected the upstream gradient on the {self._out_device}, received it on the "
                f"{device_of(dy)}"
            )
        if dy.dtype != self._out_dtype:
            raise ValueError(f"{self.name}: expected upstream gradient of dtype {self._out_dtype}, received {dy.dtype}")
        if tuple(dy.shape) != self._out_shape:
            raise ValueError(
                f"{self.name}: expected upstream gradient of shape {self._out_shape}, received {tuple(dy.shape)}"
            )
        return self.cache

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"

    def extra_repr(self) -> str:
        return ""
