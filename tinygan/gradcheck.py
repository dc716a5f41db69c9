"""Finite-difference gradient checks: the test that backprop is right.

For a layer with output y = f(x; params) we pick a random upstream gradient g (never all ones:
a ``sum()`` loss makes BatchNorm's input gradient vanish identically and the check vacuous) and
the scalar loss L = sum(f(x) * g). Backprop claims dL/dx = layer.backward(g); central
differences measure it::

    dL/dx[i] ~= (L(x + eps e_i) - L(x - eps e_i)) / (2 eps)

Run in float64: in float32 the differences drown in rounding.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from tinygan.backend import array_module, to_numpy


def relative_error(analytic: Any, numeric: Any) -> float:
    """||a - n|| / (||a|| + ||n||), 0 when both are 0."""
    a, n = to_numpy(analytic).ravel(), to_numpy(numeric).ravel()
    denom = np.linalg.norm(a) + np.linalg.norm(n)
    return 0.0 if denom == 0 else float(np.linalg.norm(a - n) / denom)


def numerical_gradient(loss: Callable[[], float], x: Any, eps: float = 1e-6) -> Any:
    """Central differences of ``loss()`` with respect to every element of ``x`` (perturbed in place)."""
    xp = array_module(x)
    grad = xp.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i].item()
        flat[i] = old + eps
        plus = loss()
        flat[i] = old - eps
        minus = loss()
        flat[i] = old
        gflat[i] = (plus - minus) / (2 * eps)
    return grad


def check_layer(
    layer: Any,
    x: Any,
    rng: np.random.Generator,
    eps: float = 1e-6,
    before_forward: Callable[[], None] | None = None,
    training: bool = True,
) -> dict[str, float]:
    """Relative errors of ``layer``'s input gradient ("x") and of every parameter gradient.

    ``before_forward`` runs before every forward pass (for example to replay Dropout's mask).
    """
    xp = array_module(x)

    def run(inp: Any) -> Any:
        if before_forward is not None:
            before_forward()
        return layer.forward(inp, training=training)

    y = run(x)
    upstream = xp.asarray(rng.standard_normal(y.shape)).astype(y.dtype)

    def loss() -> float:
        return float((run(x) * upstream).sum())

    run(x)
    layer.zero_grad()
    dx = layer.backward(upstream)
    analytic = {"x": dx}
    analytic.update({k: v.copy() for k, v in _all_grads(layer).items()})

    errors = {"x": relative_error(analytic["x"], numerical_gradient(loss, x, eps))}
    for key, param in _all_params(layer).items():
        errors[key] = relative_error(analytic[key], numerical_gradient(loss, param, eps))
    return errors


def _all_params(layer: Any) -> dict[str, Any]:
    if hasattr(layer, "named_layers"):
        return {f"{p}.{k}": v for p, sub in layer.named_layers() for k, v in sub.params.items()}
    return dict(layer.params)


def _all_grads(layer: Any) -> dict[str, Any]:
    if hasattr(layer, "named_layers"):
        return {f"{p}.{k}": v for p, sub in layer.named_layers() for k, v in sub.grads.items()}
    return dict(layer.grads)
