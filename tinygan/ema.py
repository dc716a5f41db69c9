"""Generator EMA: an exponential moving average of a model's weights, for sampling.

GAN generators oscillate around a good solution rather than settling on it; averaging their weights
over the last few thousand steps gives steadier, cleaner samples at no training cost (Yazici et al.,
2019, "The Unusual Effectiveness of Averaging in GAN Training"; used by Progressive GAN, BigGAN and
StyleGAN). After each optimizer step of the trained model::

    ema = decay_t ema + (1 - decay_t) param,    decay_t = min(decay, (1 + t) / (10 + t))

with t the number of earlier updates: TensorFlow's ``tf.train.ExponentialMovingAverage`` warm-up,
so the average forgets the random initialization within the first few hundred steps. The update
is the kernel ``ema_update_multi`` (tinygan.kernels.reference.ema): on the GPU one launch for the
whole model, with t in device memory, so it can sit inside the captured CUDA graph of a step.

BatchNorm: the averaged weights produce activations of their own distribution, so neither the
trained model's running statistics nor an average of them describes the averaged model's
activations (normalizing with the wrong statistics shifts and rescales every channel).
:meth:`EMA.refresh_batchnorm` therefore re-estimates the averaged model's running statistics from
its own activations: a few training-mode forward passes of fixed noise, their batch statistics
averaged with equal weights (the "standing statistics" of BigGAN, Brock et al., 2019, "Large Scale
GAN Training for High Fidelity Natural Image Synthesis"; the cumulative average of PyTorch's
``momentum=None``). Call it before sampling or saving; it needs no data and touches nothing of the
trained model.

Typical use (the trainer's G step)::

    ema = EMA(G, decay=0.999)
    ...; opt_g.step(); ema.update()
    G_sample = ema.refresh_batchnorm(noise_batches)    # the averaged model, ready for training=False
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterable
from typing import Any

import numpy as np

from tinygan.backend import device_of, is_gpu_array, kernels_for, to_device
from tinygan.layers.batchnorm import BatchNorm1d, BatchNorm2d
from tinygan.layers.sequential import Sequential

__all__ = ["EMA"]


class EMA:
    """An exponential moving average of ``model``'s parameters, held in ``self.model``: a copy of
    ``model`` (same layers, same device and dtype) whose parameters are the averages and whose
    BatchNorm buffers are its own (see :meth:`refresh_batchnorm`). ``source`` is the trained model.

    ``num_updates`` counts the updates so far; on the GPU it lives in device memory (a counter of
    :func:`tinygan.kernels.gpu.adam.device_step`'s form) and reading it waits for the device.
    """

    def __init__(self, model: Sequential, decay: float = 0.999) -> None:
        decay = float(decay)
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA: decay must lie in [0, 1), received {decay}")
        self.decay = decay
        self.source = model
        # Modules are not copyable: a layer that holds one (a GPU Dropout's Philox generator keeps cupy)
        # shares it with the copy.
        modules = {id(m): m for m in (np, sys.modules.get("cupy")) if m is not None}
        self.model = copy.deepcopy(model, memo=modules)
        self.model.name = f"{model.name} EMA"
        for _, layer in self.model.named_layers():
            layer.cache = None
        self._host_count = 0
        self._device_count: Any = None
        self._place_count()

    def __repr__(self) -> str:
        return f"EMA({self.source.name}, decay={self.decay})"

    # -- the tensors --------------------------------------------------------------------------------
    def _pairs(self) -> list[tuple[str, Any, Any]]:
        """(key, averaged array, trained array) for every parameter; looked up afresh each time, since
        layer.to()/astype() replace the arrays."""
        ours, theirs = list(self.model.named_layers()), list(self.source.named_layers())
        if len(ours) != len(theirs):
            raise ValueError(f"{self!r}: the model now has {len(theirs)} layers, its average {len(ours)}")
        pairs = []
        for (name, mine), (_, other) in zip(ours, theirs):
            if set(mine.params) != set(other.params):
                raise ValueError(
                    f"{self!r}: layer {name} has parameters {sorted(other.params)}, its average {sorted(mine.params)}"
                )
            pairs += [(f"{name}.{key}", mine.params[key], other.params[key]) for key in mine.params]
        return pairs

    def _on_gpu(self) -> bool:
        pairs = self._pairs()
        return bool(pairs) and is_gpu_array(pairs[0][1])

    def _place_count(self) -> None:
        """Keep the update count where the parameters are."""
        if self._on_gpu() and self._device_count is None:
            from tinygan.kernels.gpu.adam import device_step

            self._device_count = device_step(self._host_count)
        elif not self._on_gpu() and self._device_count is not None:
            self._host_count = self.num_updates
            self._device_count = None

    @property
    def num_updates(self) -> int:
        if self._device_count is not None:
            return int(self._device_count[:1].get()[0])
        return self._host_count

    @num_updates.setter
    def num_updates(self, value: int) -> None:
        self._host_count = int(value)
        if self._device_count is not None:
            self._device_count.set(np.array([self._host_count, 0], dtype=np.uint64))

    def device_arrays(self) -> list[Any]:
        """Every persistent array :meth:`update` reads or writes (for a captured CUDA graph's list):
        the averaged parameters, the trained ones and the device count."""
        arrays = [a for _, mine, theirs in self._pairs() for a in (mine, theirs)]
        return arrays + ([self._device_count] if self._device_count is not None else [])

    # -- the update ---------------------------------------------------------------------------------
    def update(self) -> None:
        """One step of the average towards the trained model's current parameters (after its optimizer
        step). On the GPU: one launch per dtype, no host synchronization."""
        pairs = self._pairs()
        if not pairs:
            return
        for key, mine, theirs in pairs:
            if device_of(mine) != device_of(theirs) or mine.dtype != theirs.dtype:
                raise ValueError(
                    f"{self!r}: {key} is {theirs.dtype} on the {device_of(theirs)} but its average is "
                    f"{mine.dtype} on the {device_of(mine)}; call ema.to(device) after model.to(device)"
                )
        groups: dict[Any, list[tuple[Any, Any]]] = {}
        for _, mine, theirs in pairs:
            groups.setdefault(mine.dtype, []).append((mine, theirs))
        K = kernels_for(pairs[0][1])
        if self._on_gpu():
            if self._device_count is None:
                self._place_count()
            # Only the last launch advances the count, so every dtype sees the same t.
            for i, tensors in enumerate(groups.values()):
                emas, params = zip(*tensors)
                K.ema_update_multi(emas, params, self.decay, self._device_count, advance=i == len(groups) - 1)
            return
        for tensors in groups.values():
            emas, params = zip(*tensors)
            K.ema_update_multi(list(emas), list(params), self.decay, self._host_count)
        self._host_count += 1

    def to(self, device: str) -> EMA:
        """Move the averaged model (and the count) to ``device``; the trained model moves by itself."""
        self.model.to(device)
        self._place_count()
        return self

    # -- BatchNorm statistics of the averaged model ----------------------------------------------------
    def refresh_batchnorm(self, noise_batches: Iterable[Any]) -> Sequential:
        """Re-estimate every BatchNorm layer's running mean and variance in ``self.model`` as the equal-
        weight average of its batch statistics over ``noise_batches`` (inputs of the model, e.g.
        latent vectors; host arrays are moved to the model's device), and return ``self.model``.

        BatchNorm layers run in training mode (batch statistics), every other layer in evaluation mode
        (Dropout off). Batches of at least 2 samples; a fixed set of noise gives the same statistics
        every time. Models without BatchNorm are returned unchanged."""
        layers = [layer for _, layer in self.model.named_layers()]
        norms = [layer for layer in layers if isinstance(layer, (BatchNorm1d, BatchNorm2d))]
        if not norms:
            return self.model
        batches = list(noise_batches)
        if not batches:
            raise ValueError(f"{self!r}: refresh_batchnorm needs at least one batch of noise")
        device = self.model.device
        saved = [layer.momentum for layer in norms]
        for layer in norms:
            layer.buffers["running_mean"][...] = 0
            layer.buffers["running_var"][...] = 1
        try:
            for k, z in enumerate(batches):
                # Momentum 1/(k+1) makes the running value the plain average of the k+1 batch values.
                for layer in norms:
                    layer.momentum = 1.0 / (k + 1)
                x = to_device(z, device).astype(self.model.dtype, copy=False)
                for layer in layers:
                    x = layer.forward(x, training=layer in norms)
        finally:
            for layer, momentum in zip(norms, saved):
                layer.momentum = momentum
            for layer in layers:
                layer.cache = None
        return self.model

    # -- checkpoints ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """``{"num_updates": int, "<layer>.<name>": array, ...}``: the averaged model's parameters and
        buffers as host arrays, under :meth:`Sequential.state_dict`'s keys, so that the arrays alone
        load into a fresh copy of the model for sampling."""
        return {"num_updates": int(self.num_updates), **self.model.state_dict()}

    def load_state_dict(self, state: dict[str, Any], source: str = "EMA state") -> None:
        """Restore :meth:`state_dict`'s output. Every key and shape must match (ValueError naming
        ``source`` and the key otherwise); nothing changes unless all do."""
        if "num_updates" not in state:
            raise ValueError(f"{source} does not match {self!r}: missing 'num_updates'")
        count = np.asarray(state["num_updates"])
        if count.shape != () or count.dtype.kind not in "iu" or int(count) < 0:
            raise ValueError(f"{source}: 'num_updates' must be a non-negative int, received {state['num_updates']!r}")
        self.model.load_state_dict({k: v for k, v in state.items() if k != "num_updates"}, source=source)
        self._place_count()
        self.num_updates = int(count)
