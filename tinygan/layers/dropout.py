"""Dropout: inverted dropout (Srivastava et al., 2014); see tinygan.kernels.reference.dropout."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from tinygan.backend import device_of, kernels_for, to_device
from tinygan.init import make_rng
from tinygan.layers.base import Layer

__all__ = ["Dropout"]


class Dropout(Layer):
    """Zero each unit with probability ``p`` in training and scale the survivors by 1/(1-p);
    the identity when ``training=False``.

    On the CPU the mask comes from ``rng`` (a ``numpy.random.Generator`` or a seed), so a seed fixes
    every mask of a run, and resetting ``layer.rng.bit_generator.state`` replays the same masks.

    On the GPU the mask is drawn on the device by ``layer.device_rng``, a
    :class:`tinygan.gpu_random.PhiloxGenerator` created when the layer moves there and seeded from
    ``rng``'s next draw (so the seed still fixes every mask), in the same launch that applies it: no host
    round trip, and a step can be captured as a CUDA graph. ``device_rng.state_dict()`` and
    ``load_state_dict`` replay masks there. Setting ``device_rng = None`` draws the GPU masks on the
    host from ``rng`` instead, as on the CPU (slow, and not capturable).
    """

    def __init__(self, p: float = 0.5, rng: np.random.Generator | int | None = None) -> None:
        super().__init__()
        p = float(p)
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout: p must satisfy 0 <= p < 1, received {p}")
        self.p = p
        self.rng = make_rng(rng)
        self.device_rng: Any = None

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def to(self, device: str) -> Dropout:
        super().to(device)
        if device == "gpu" and self.device_rng is None:
            from tinygan.gpu_random import PhiloxGenerator

            # Drawn from a copy of rng: the layer's seed decides the GPU masks as it decides the CPU ones,
            # and rng itself is left as it was (a GPU layer given host masks draws what the CPU layer would).
            self.device_rng = PhiloxGenerator(int(copy.deepcopy(self.rng).integers(2**63)))
        elif device == "cpu":
            self.device_rng = None
        return self

    def device_arrays(self) -> list[Any]:
        """Device state that persists between forward calls: the GPU generator's counter (none on the CPU)."""
        return [] if self.device_rng is None else self.device_rng.device_arrays()

    def _draw_mask(self, x: Any) -> Any:
        """Keep mask (bool, True = kept) for ``x``, on x's device, drawn on the host in float64 so that a
        seed gives the same mask whatever x's dtype or device."""
        keep = self.rng.random(x.shape) >= self.p
        return to_device(keep, device_of(x))

    def forward(self, x: Any, training: bool = True) -> Any:
        self.check_input(x)
        self.remember_output(x.shape, x)
        if not training or self.p == 0.0:
            # Nothing cached but the fact that backward is the identity too.
            self.cache = "identity"
            return x
        if self.device_rng is not None:
            if device_of(x) != "gpu":
                raise ValueError(
                    f"{self.name}: input is on the {device_of(x)} but the layer is on the gpu (it draws its masks "
                    "there); move one of them (layer.to(...) or tinygan.backend.to_device)"
                )
            y, self.cache = self.device_rng.dropout(x, self.p)
            return y
        mask = self._draw_mask(x)
        self.cache = mask
        return kernels_for(x).dropout_forward(x, mask, self.p)

    def backward(self, dy: Any, param_grads: bool = True, input_grad: bool = True) -> Any:
        mask = self.check_grad(dy)
        if not input_grad:
            return None
        if isinstance(mask, str):
            return dy
        return kernels_for(dy).dropout_backward(dy, mask, self.p)
