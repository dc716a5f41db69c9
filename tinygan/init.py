"""Weight initializers, each drawing from a seeded ``numpy.random.Generator``.

Weights are always drawn on the host in float64 and then cast, so the same seed gives the
same model in float32 and float64, on the CPU and on the GPU.
"""

from __future__ import annotations

import numpy as np


def fans(shape: tuple[int, ...], layout: str = "dense") -> tuple[int, int]:
    """(fan_in, fan_out) of a weight tensor.

    ``dense``: W (in, out). ``conv``: W (out, in, kh, kw). ``conv_transpose``: W (in, out, kh, kw).
    For both convolution layouts fan_in = shape[1] * kh * kw and fan_out = shape[0] * kh * kw, as PyTorch
    computes them. For a transposed convolution that makes fan_in count its *output* channels, which is
    also what Keras does (its Conv2DTranspose kernel is (kh, kw, out, in), and fan_in = kh * kw * out).
    """
    if layout == "dense":
        return shape[0], shape[1]
    if layout not in ("conv", "conv_transpose"):
        raise ValueError(f"unknown weight layout {layout!r}")
    receptive = int(np.prod(shape[2:]))
    return shape[1] * receptive, shape[0] * receptive


def glorot_uniform(rng: np.random.Generator, shape: tuple[int, ...], layout: str = "dense") -> np.ndarray:
    """Glorot & Bengio (2010): U(-a, a) with a = sqrt(6 / (fan_in + fan_out)); Keras's default."""
    fan_in, fan_out = fans(shape, layout)
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape)


def normal(rng: np.random.Generator, shape: tuple[int, ...], std: float = 0.02) -> np.ndarray:
    """N(0, std^2); std 0.02 is the DCGAN paper's choice (Radford et al., 2015)."""
    return rng.normal(0.0, std, size=shape)


def make_rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    """Accept a Generator, a seed, or None (seed 0) and return a Generator."""
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(0 if rng is None else rng)
