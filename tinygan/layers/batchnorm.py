"""BatchNorm1d and BatchNorm2d (Ioffe & Szegedy, 2015); equations in tinygan.kernels.reference.batchnorm.

Training normalizes with the batch's statistics and updates the running ones as PyTorch does::

    running_mean = (1 - momentum) running_mean + momentum mean
    running_var  = (1 - momentum) running_var  + momentum var * M / (M - 1)

with M the number of values per channel: the running variance is the unbiased estimate, the
normalization itself uses the biased one. Evaluation normalizes with the running statistics, which
makes the layer a fixed per-channel affine map; its backward is then just a per-channel scale.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tinygan.backend import array_module, kernels_for
from tinygan.layers.base import Layer

__all__ = ["BatchNorm1d", "BatchNorm2d"]


class _BatchNorm(Layer):
    """Shared by BatchNorm1d and BatchNorm2d, which differ only in the input rank they accept."""

    _input_ndim: int = 0

    def __init__(self, num_features: int, momentum: float = 0.1, eps: float = 1e-5, dtype: Any = np.float32) -> None:
        super().__init__()
        if int(num_features) != num_features or num_features <= 0:
            raise ValueError(f"{self.name}: num_features must be a positive int, received {num_features}")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"{self.name}: momentum must lie in [0, 1], received {momentum}")
        if eps <= 0:
            raise ValueError(f"{self.name}: eps must be positive, received {eps}")
        self.num_features = int(num_features)
        self.momentum, self.eps = float(momentum), float(eps)
        self.params["gamma"] = np.ones(self.num_features, dtype=dtype)
        self.params["beta"] = np.zeros(self.num_features, dtype=dtype)
        self.buffers["running_mean"] = np.zeros(self.num_features, dtype=dtype)
        self.buffers["running_var"] = np.ones(self.num_features, dtype=dtype)
        self.zero_grad()

    def extra_repr(self) -> str:
        return f"{self.num_features}, momentum={self.momentum}, eps={self.eps}"

    def _per_channel(self, v: Any, ndim: int) -> Any:
        return v.reshape((1, -1) + (1,) * (ndim - 2))

    def forward(self, x: Any, training: bool = True) -> Any:
        self.check_input(x, (None, self.num_features) + (None,) * (self._input_ndim - 2))
        K = kernels_for(x)
        gamma, beta = self.params["gamma"], self.params["beta"]
        self._out_shape = tuple(x.shape)
        if not training:
            mean, var = self.buffers["running_mean"], self.buffers["running_var"]
            inv_std = 1 / array_module(var).sqrt(var + self.eps)
            # Per-channel copies: the backward must see the statistics this forward used.
            self.cache = ("eval", x, mean.copy(), inv_std)
            return K.batchnorm_inference(x, gamma, beta, mean, var, self.eps)
        m = x.size // self.num_features
        if m <= 1:
            raise ValueError(
                f"{self.name}: expected more than 1 value per channel when training, received input of shape "
                f"{tuple(x.shape)} (use training=False, or a larger batch)"
            )
        y, mean, var, xhat, inv_std = K.batchnorm_forward(x, gamma, beta, self.eps)
        mom = self.momentum
        rm, rv = self.buffers["running_mean"], self.buffers["running_var"]
        rm *= 1 - mom
        rm += mom * mean
        rv *= 1 - mom
        rv += (mom * m / (m - 1)) * var
        self.cache = ("train", xhat, inv_std)
        return y

    def backward(self, dy: Any, param_grads: bool = True, input_grad: bool = True) -> Any:
        cache = self.check_grad(dy)
        gamma = self.params["gamma"]
        if cache[0] == "train":
            _, xhat, inv_std = cache
            # One kernel yields all three: the input gradient needs dgamma and dbeta anyway.
            dx, dgamma, dbeta = kernels_for(dy).batchnorm_backward(dy, xhat, inv_std, gamma)
        else:
            _, x, mean, inv_std = cache
            axes = (0, *range(2, dy.ndim))
            dx = dy * self._per_channel(gamma * inv_std, dy.ndim) if input_grad else None
            if param_grads:
                xhat = (x - self._per_channel(mean, x.ndim)) * self._per_channel(inv_std, x.ndim)
                dgamma, dbeta = (dy * xhat).sum(axis=axes), dy.sum(axis=axes)
        if param_grads:
            self.grads["gamma"] += dgamma
            self.grads["beta"] += dbeta
        return dx if input_grad else None


class BatchNorm1d(_BatchNorm):
    """Batch normalization of (N, C) inputs (after a Dense layer), one (gamma, beta) per feature."""

    _input_ndim = 2


class BatchNorm2d(_BatchNorm):
    """Batch normalization of (N, C, H, W) inputs, statistics pooled over N, H and W per channel."""

    _input_ndim = 4
