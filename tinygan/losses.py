"""Losses, each returning ``(loss, dlogits)``: the scalar loss and its gradient, ready to feed to
``model.backward``.

Why losses take logits
----------------------
A discriminator that ends in a Sigmoid outputs p = sigmoid(z). Computing BCE from p,
-(t log p + (1 - t) log(1 - p)), breaks down exactly when training needs it: once z exceeds
about 17 (float32) or 37 (float64), p rounds to 1, log(1 - p) gives -inf and the gradient becomes
NaN or vanishes. (On the negative side p stays representable far longer, until exp(-z) overflows
below about -88 in float32 or -709 in float64.) Written in z instead,

    loss = max(z, 0) - z t + log1p(exp(-|z|))

is finite and accurate for every z. So the model is run with ``Sequential.forward(x, logits=True)``,
which skips the final Sigmoid, and the loss applies the sigmoid inside (the following
``backward`` starts below the skipped Sigmoid).

Why the gradient is p - t
-------------------------
With p = sigmoid(z), dp/dz = p (1 - p), and d/dp of the loss is -t/p + (1 - t)/(1 - p) =
(p - t) / (p (1 - p)). The product is simply dloss/dz = p - t: the sigmoid's derivative cancels,
so the gradient never vanishes where the sigmoid saturates on the wrong side. Averaging over the
numel elements divides it by numel.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tinygan.backend import array_module, device_of, kernels_for, to_device
from tinygan.layers.base import FLOAT_DTYPES

__all__ = ["bce_with_logits", "generator_loss"]


def bce_with_logits(logits: Any, targets: Any) -> tuple[Any, Any]:
    """Mean binary cross-entropy between ``sigmoid(logits)`` and ``targets``; returns ``(loss, dlogits)``.

    ``targets`` is an array of logits' shape with values in [0, 1] (soft or smoothed labels are
    fine), or a scalar that stands for every element (``1.0`` for "real", ``0.0`` for "fake").
    ``dlogits = (sigmoid(logits) - targets) / logits.size`` has logits' shape, dtype and device.

    On the CPU ``loss`` is a Python float. On the GPU it is a 0-d device array and nothing here waits
    for the device (call ``.item()`` when the value is needed): a scalar target travels to the kernel
    as an argument, and target arrays already on the GPU are not range-checked, since reading their
    values back would synchronize with the device on every step.
    """
    if not hasattr(logits, "dtype") or logits.dtype not in FLOAT_DTYPES:
        raise ValueError(
            f"bce_with_logits: expected float32 or float64 logits, received {getattr(logits, 'dtype', type(logits))}"
        )
    if logits.size == 0:
        raise ValueError("bce_with_logits: received empty logits")
    xp = array_module(logits)
    on_gpu = xp is not np
    if not hasattr(targets, "shape"):
        targets = np.asarray(targets)
    if targets.ndim > 0:
        if tuple(targets.shape) != tuple(logits.shape):
            raise ValueError(
                f"bce_with_logits: targets of shape {tuple(targets.shape)} do not match logits of shape "
                f"{tuple(logits.shape)}"
            )
        host_targets = device_of(targets) == "cpu"
        if on_gpu and host_targets:
            _check_target_range(np.asarray(targets).astype(logits.dtype))
        targets = to_device(targets, device_of(logits)).astype(logits.dtype, copy=False)
        if not on_gpu:
            _check_target_range(targets)
    elif on_gpu and device_of(targets) == "gpu":
        pass  # a 0-d device array: the kernel broadcasts it
    elif on_gpu:
        _check_target_range(targets)
        targets = float(targets)
    else:
        _check_target_range(targets)
        targets = xp.full(logits.shape, float(targets), dtype=logits.dtype)
    loss, dlogits = kernels_for(logits).bce_with_logits(logits, targets)
    return (loss if on_gpu else float(loss)), dlogits


def _check_target_range(targets: Any) -> None:
    """ValueError unless every target lies in [0, 1] (host values only). Written as "not inside" so that
    NaN, which compares false with everything, is refused too."""
    if not bool(((targets >= 0) & (targets <= 1)).all()):
        nans = int(np.isnan(targets).sum())
        found = f"{nans} NaN" if nans else f"values in [{float(targets.min())}, {float(targets.max())}]"
        raise ValueError(f"bce_with_logits: targets must lie in [0, 1], received {found}")


def generator_loss(d_logits_on_fake: Any, kind: str = "nonsaturating") -> tuple[Any, Any]:
    """The generator's loss from the discriminator's logits on generated samples; ``(loss, dlogits)``.

    ``"nonsaturating"`` (Goodfellow et al., 2014, section 3): minimize -log D(G(z)), i.e. BCE with
    target 1. Its gradient (sigmoid(z) - 1)/n is largest when D confidently rejects the fakes,
    early in training, which is when G most needs it.

    ``"minimax"``: minimize log(1 - D(G(z))), the game's original value function, which is
    -BCE with target 0: loss = -mean(softplus(z)), gradient -sigmoid(z)/n. It saturates (gradient
    ~0) exactly when D rejects the fakes; kept for comparison.

    Both go through the stable BCE on logits, so they stay finite for any logit. The loss is a float
    on the CPU and a 0-d device array on the GPU, as for :func:`bce_with_logits`.
    """
    if kind == "nonsaturating":
        return bce_with_logits(d_logits_on_fake, 1.0)
    if kind == "minimax":
        loss, dlogits = bce_with_logits(d_logits_on_fake, 0.0)
        return -loss, -dlogits
    raise ValueError(f"generator_loss: kind must be 'nonsaturating' or 'minimax', received {kind!r}")
