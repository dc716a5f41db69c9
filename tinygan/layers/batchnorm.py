"""BatchNorm1d and BatchNorm2d (Ioffe & Szegedy, 2015); equations in tinygan.kernels.reference.batchnorm.

Training normalizes with the batch's statistics and updates the running ones as PyTorch does::

    running_mean = (1 - f) running_mean + f mean
    running_var  = (1 - f) running_var  + f var * M / (M - 1)

with M the number of values per channel: the running variance is the unbiased estimate, the
normalization itself uses the biased one. The factor f is ``momentum`` (an exponential moving
average), or with ``momentum=None`` f = 1 / t at the t-th training batch, which makes the running
statistics the plain mean of the statistics of all t batches seen so far (a cumulative moving
average; t is the ``num_batches_tracked`` buffer, which only such layers have, and which lives on the
layer's device so that a captured CUDA graph replays t, t + 1, ...). Evaluation normalizes with the
running statistics, which makes the layer a fixed per-channel affine map; its backward is then just a
per-channel scale.

An empty input (N = 0, or H or W = 0) gives an empty output and changes nothing, in training as in
evaluation, as in PyTorch; its backward gives an empty dx and adds nothing to the gradients. (PyTorch
does count an empty training batch in num_batches_tracked; here t counts only batches with statistics,
so the cumulative average stays the mean over those batches.)
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from tinygan.backend import array_module, kernels_for
from tinygan.kernels.reference.activation import activate, activate_backward
from tinygan.layers.activation import check_fusion_slope
from tinygan.layers.base import Layer

__all__ = ["BatchNorm1d", "BatchNorm2d"]


class BatchNormCache(NamedTuple):
    """What a BatchNorm's backward needs. ``mode``: "train" (batch statistics: xhat, inv_std), "eval" (running
    statistics: x, mean, inv_std) or "empty"; ``y`` and ``slope``: the fused activation's output and slope
    (slope None: not fused, y unused)."""

    mode: str
    x: Any = None
    mean: Any = None
    xhat: Any = None
    inv_std: Any = None
    y: Any = None
    slope: float | None = None


def _gate(y: Any, slope: float | None) -> Any:
    """What the backward keeps of the output: y for a fused activation (its gradient reads y), else nothing."""
    return None if slope is None else y


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


class _BatchNorm(Layer):
    """Shared by BatchNorm1d and BatchNorm2d, which differ only in the input rank they accept."""

    _input_ndim: int = 0

    def __init__(
        self, num_features: int, momentum: float | None = 0.1, eps: float = 1e-5, dtype: Any = np.float32
    ) -> None:
        super().__init__()
        if not _is_real(num_features) or int(num_features) != num_features or num_features <= 0:
            raise ValueError(f"{self.name}: num_features must be a positive int, received {num_features!r}")
        if momentum is not None and not (_is_real(momentum) and 0.0 <= momentum <= 1.0):
            raise ValueError(f"{self.name}: momentum must lie in [0, 1] or be None, received {momentum!r}")
        if not (_is_real(eps) and 0 < eps < np.inf):
            raise ValueError(f"{self.name}: eps must be positive and finite, received {eps!r}")
        self.num_features = int(num_features)
        self.momentum = None if momentum is None else float(momentum)
        self.eps = float(eps)
        self.params["gamma"] = np.ones(self.num_features, dtype=dtype)
        self.params["beta"] = np.zeros(self.num_features, dtype=dtype)
        self.buffers["running_mean"] = np.zeros(self.num_features, dtype=dtype)
        self.buffers["running_var"] = np.ones(self.num_features, dtype=dtype)
        if self.momentum is None:
            # A float array like the other buffers (exact up to 2**24 batches in float32; beyond that t
            # stops growing and f stays below 6e-8), updated in place where the layer lives.
            self.buffers["num_batches_tracked"] = np.zeros((), dtype=dtype)
        self.zero_grad()

    def extra_repr(self) -> str:
        return f"{self.num_features}, momentum={self.momentum}, eps={self.eps}"

    def _per_channel(self, v: Any, ndim: int) -> Any:
        return v.reshape((1, -1) + (1,) * (ndim - 2))

    def forward(self, x: Any, training: bool = True, *, slope: float | None = None) -> Any:
        """y = gamma xhat + beta, or act(gamma xhat + beta) with the fused activation ``slope`` (0: ReLU,
        s: LeakyReLU(s)): Sequential's fusion plan runs a BatchNorm and the ReLU / LeakyReLU after it as one
        step, the activation applied in the pass that writes y."""
        slope = check_fusion_slope(slope, self.name)
        self.check_input(x, (None, self.num_features) + (None,) * (self._input_ndim - 2))
        K = kernels_for(x)
        gamma, beta = self.params["gamma"], self.params["beta"]
        self.remember_output(x.shape, x)
        if x.size == 0:
            # No values, no statistics: nothing to normalize and nothing to learn from (PyTorch does the same).
            self.cache = BatchNormCache("empty")
            return array_module(x).empty_like(x)
        if not training:
            mean, var = self.buffers["running_mean"], self.buffers["running_var"]
            inv_std = 1 / array_module(var).sqrt(var + self.eps)
            y = activate(K.batchnorm_inference(x, gamma, beta, mean, var, self.eps), slope, K)
            # Per-channel copies: the backward must see the statistics this forward used.
            self.cache = BatchNormCache("eval", x=x, mean=mean.copy(), inv_std=inv_std, y=_gate(y, slope), slope=slope)
            return y
        m = x.size // self.num_features
        if m <= 1:
            raise ValueError(
                f"{self.name}: expected more than 1 value per channel when training, received input of shape "
                f"{tuple(x.shape)} (use training=False, or a larger batch)"
            )
        fused = () if slope is None else (slope,)
        y, mean, var, xhat, inv_std = K.batchnorm_forward(x, gamma, beta, self.eps, *fused)
        self._update_running_stats(mean, var, m)
        self.cache = BatchNormCache("train", xhat=xhat, inv_std=inv_std, y=_gate(y, slope), slope=slope)
        return y

    def _update_running_stats(self, mean: Any, var: Any, m: int) -> None:
        """running = (1 - f) running + f batch statistic (kernels' batchnorm_update_running: one launch on the
        GPU), f = momentum, or 1/t for the cumulative average counted in num_batches_tracked on the layer's
        device: no host round trip, and a captured CUDA graph replays it."""
        kernels_for(mean).batchnorm_update_running(
            self.buffers["running_mean"],
            self.buffers["running_var"],
            mean,
            var,
            m,
            self.momentum,
            self.buffers.get("num_batches_tracked"),
        )

    def backward(self, dy: Any, param_grads: bool = True, input_grad: bool = True) -> Any:
        """dL/dx from dy = dL/dy (dL/d(activated output) after a fused forward); adds dgamma and dbeta."""
        cache = self.check_grad(dy)
        gamma = self.params["gamma"]
        if cache.mode == "empty":
            return array_module(dy).empty_like(dy) if input_grad else None
        K = kernels_for(dy)
        if cache.mode == "train":
            # One kernel yields all three (the input gradient needs dgamma and dbeta anyway), forming the fused
            # activation's gradient as it reads dy.
            fused = () if cache.slope is None else (cache.y, cache.slope)
            dx, dgamma, dbeta = K.batchnorm_backward(dy, cache.xhat, cache.inv_std, gamma, *fused)
        else:
            dy = activate_backward(dy, cache.y, cache.slope, self.name, K)
            x, mean, inv_std = cache.x, cache.mean, cache.inv_std
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
