"""Per-epoch diagnostics of a GAN run that still mean something under Adam, named by layer (``G.dense1``).

Adam divides each gradient by its own running RMS (m / sqrt(v)), so a raw weight-gradient norm says
little about how far the weights move: a gradient 10^5 times smaller can move them as far. What a run
logs per epoch (``docs/backprop.md``, "Reading the diagnostics under Adam"):

- ``grad.G.dense1``: the last step's weight-gradient norm ||dL/dW|| of the layer (what Adam is given);
- ``update.G.dense1``: the relative update over the epoch, ||theta_end - theta_start|| / ||theta_start||,
  theta being all the layer's parameters (what Adam actually did with those gradients);
- ``g_input_grad``: what G actually receives from D, the RMS over samples of ||dl_i/dG(z_i)||, with
  l_i one sample's generator loss (so it does not depend on the batch size), measured in every training
  step on the step's own batch (D in training mode, dropout on) and averaged over the epoch's steps: a
  figure of the step (:data:`tinygan.step.FIGURES`), summed on the device like D's;
- ``g_weight_share``: how evenly the step's samples share G's update, (sum w_i)^2 / (n sum w_i^2) with
  w_i = |dl_i/ds_i| the factor of sample i's own direction (D(G(z_i)) for the minimax loss, 1 - D(G(z_i))
  for the non-saturating one, s_i D's logit): 1 when all weigh the same, 1/n when one sample carries the
  step; a step figure averaged over the epoch, like ``g_input_grad``;
- ``g_input_grad_probe``: the same quantity once, at the epoch's end, on the probe batch below (D in
  evaluation mode, the run's fixed noise): what the epoch's last weights give on the same inputs every
  epoch, with no dropout and no sampling noise between epochs;
- ``dead.G``, ``dead.D``: the share of the units feeding a ReLU or LeakyReLU whose input is <= 0 for
  every sample of the probe batch: dead for a ReLU (no gradient passes), on the small slope for a
  LeakyReLU.

The probe: G on the run's fixed noise (the 64 vectors of its sample grids, whose images the grid then
reuses: one forward pass of G serves both), D on the first 64 real images and on those generated ones,
both in evaluation mode (dropout off, BatchNorm's running statistics), D's weights untouched
(``param_grads=False``); nothing of the run's random streams is used. It runs once per epoch on the
training thread, outside the captured step: G forward, D forward twice and D backward once, on 64.
:class:`EpochFigures` computes a run's figures of both kinds together (on the GPU as one CUDA graph).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tinygan import backend
from tinygan.losses import generator_loss

__all__ = [
    "ACTIVATIONS",
    "EpochFigures",
    "gradient_norms",
    "layer_names",
    "params_snapshot",
    "probe",
    "update_ratios",
]

# Short names of the layer kinds that hold parameters; others are named by their class, lower case.
KIND_NAMES = {"Dense": "dense", "Conv2d": "conv", "ConvTranspose2d": "deconv", "BatchNorm1d": "bn", "BatchNorm2d": "bn"}
ACTIVATIONS = ("ReLU", "LeakyReLU")  # the layers whose inputs the dead-unit share counts


def layer_names(net: Any, net_name: str) -> dict[str, str]:
    """``{layer prefix: "G.dense1", ...}`` for every layer of ``net`` with parameters, numbered by kind
    from 1 in the order of the network (``G.dense1``, ``G.bn1``, ``G.deconv1``, ...)."""
    names, counts = {}, {}
    for prefix, layer in net.named_layers():
        if layer.params:
            kind = KIND_NAMES.get(type(layer).__name__, type(layer).__name__.lower())
            counts[kind] = counts.get(kind, 0) + 1
            names[prefix] = f"{net_name}.{kind}{counts[kind]}"
    return names


def gradient_norms(net: Any, net_name: str) -> dict[str, float]:
    """``{"grad.G.dense1": ||dL/dW||, ...}``: the weight gradient of the last step, per layer with a
    weight ``W`` (one transfer from the device for the whole network)."""
    names = layer_names(net, net_name)
    keys, norms = [], []
    for prefix, layer in net.named_layers():
        if "W" in layer.grads:
            g = layer.grads["W"]
            keys.append(f"grad.{names[prefix]}")
            norms.append((g * g).sum())
    return _square_roots(keys, norms)


def params_snapshot(net: Any) -> dict[str, list[Any]]:
    """Copies (on the network's device) of every layer's parameters: the start of an epoch."""
    xp = backend.xp_for(net.device)
    return {prefix: [xp.copy(p) for p in layer.params.values()] for prefix, layer in net.named_layers() if layer.params}


def update_ratios(net: Any, net_name: str, before: dict[str, list[Any]]) -> dict[str, float]:
    """``{"update.G.dense1": ||theta - theta_before|| / ||theta_before||, ...}`` per layer with parameters,
    ``before`` from :func:`params_snapshot` (all the layer's parameters together)."""
    keys, ratios = _update_ratios_device(net, net_name, before)
    if not keys:
        return {}
    return dict(zip(keys, (float(v) for v in backend.to_numpy(ratios))))


def _update_ratios_device(net: Any, net_name: str, before: dict[str, list[Any]]) -> tuple[list[str], Any]:
    """:func:`update_ratios`' keys and its values as one array on the network's device (None: no keys)."""
    names = layer_names(net, net_name)
    keys, moved, size = [], [], []
    for prefix, layer in net.named_layers():
        if prefix not in before:
            continue
        start = before[prefix]
        keys.append(f"update.{names[prefix]}")
        moved.append(sum(((p - p0) ** 2).sum() for p, p0 in zip(layer.params.values(), start)))
        size.append(sum((p0 * p0).sum() for p0 in start))
    if not keys:
        return [], None
    xp = backend.xp_for(net.device)
    moved_all = xp.stack([xp.asarray(m) for m in moved])
    size_all = xp.maximum(xp.stack([xp.asarray(s) for s in size]), 1e-30)  # a layer of zeros moves from 0
    return keys, xp.sqrt(moved_all / size_all)


def probe(G: Any, D: Any, z: Any, real: Any, g_loss: str = "nonsaturating") -> tuple[dict[str, float], Any]:
    """``dead.G``, ``dead.D`` and ``g_input_grad_probe`` on the probe batch (see the module docstring): noise
    ``z`` (n, latent) and ``real`` images (any number), on the networks' device. Returns the figures and
    G's output for ``z`` (what ``G.forward(z, training=False)`` gives: the run's sample grid reuses it)."""
    figures, fake, units = _probe_device(G, D, z, real, g_loss)
    return _probe_figures(backend.to_numpy(figures), units), fake


def _probe_device(G: Any, D: Any, z: Any, real: Any, g_loss: str) -> tuple[Any, Any, tuple[int, int]]:
    """:func:`probe`'s work on the device: ``[g_input_grad, dead units of G, dead units of D]`` (float64), G's
    output, and the unit counts of G and D (host integers, from the shapes)."""
    xp = backend.xp_for(G.device)
    n = z.shape[0]
    fake, g_masks = _forward_masks(G, z, stop=len(G.layers))
    stop = len(D.layers) - 1 if D.ends_in_sigmoid() else len(D.layers)  # logits, as the step's D.forward
    _, real_masks = _forward_masks(D, real, stop)
    logits, fake_masks = _forward_masks(D, fake.reshape((n, *real.shape[1:])), stop)  # D's caches: the fakes'
    _, dlogits = generator_loss(logits, kind=g_loss)
    dx = dlogits
    for layer in reversed(D.layers[:stop]):  # Sequential.backward over the layers this probe ran; D's weights stay
        dx = layer.backward(dx, param_grads=False)
    dx = dx.reshape(n, -1)
    # dlogits is d(mean loss): times n, one sample's own loss gradient; RMS over the samples.
    per_sample = xp.sqrt((dx * dx).sum(axis=1)) * n
    g_dead = sum((m.sum() for m in g_masks), xp.zeros((), dtype=xp.int64))
    d_dead = sum(((a & b).sum() for a, b in zip(real_masks, fake_masks)), xp.zeros((), dtype=xp.int64))
    figures = xp.stack([xp.sqrt((per_sample * per_sample).mean()), xp.asarray(g_dead), xp.asarray(d_dead)])
    units = (sum(m.size for m in g_masks), sum(m.size for m in real_masks))
    return figures.astype(xp.float64, copy=False), fake, units


def _probe_figures(values: Any, units: tuple[int, int]) -> dict[str, float]:
    """:func:`probe`'s figures from :func:`_probe_device`'s three values, on the host."""
    g_input_grad, g_dead_count, d_dead_count = (float(v) for v in values)
    g_units, d_units = units
    return {
        "g_input_grad_probe": g_input_grad,
        "dead.G": g_dead_count / g_units if g_units else 0.0,
        "dead.D": d_dead_count / d_units if d_units else 0.0,
    }


class EpochFigures:
    """A run's epoch-end diagnostics of G and D: each layer's update ratio since :meth:`begin_epoch` and
    the probe's figures, computed on the networks' device into one vector that reaches the host in one
    transfer. ``z`` and ``real`` (the probe batch) stay the same arrays for the run.

    With ``stream`` (a GPU run's step stream) that device work is recorded as a CUDA graph
    (:class:`tinygan.cuda_graph.StepGraph`: the first epoch eager, the second captured, replays after) whose
    inputs stay where they are: the probe batch, the parameters, the epoch-start copies kept here. Eager, its
    few hundred small launches took ~15 ms an epoch on an H200, more than the steps of a per-class CIFAR-10
    epoch (``bench/results/run-wallclock-2026-12-02.md``); a replay gives the same bits."""

    def __init__(
        self, G: Any, D: Any, z: Any, real: Any, g_loss: str, stream: Any = None, cuda_graph: bool = True
    ) -> None:
        self.G, self.D, self.z, self.real, self.g_loss = G, D, z, real, g_loss
        self.nets = (("G", G), ("D", D))
        self._before = {name: params_snapshot(net) for name, net in self.nets}
        self._started = False  # begin_epoch ran for this epoch (not so for an epoch resumed midway)
        self._out: dict[str, Any] = {}
        self.graph: Any = None
        if stream is not None:
            from tinygan.cuda_graph import StepGraph

            self.graph = StepGraph(stream, self._device, self._arrays, cuda_graph, what="the epoch's diagnostics")

    def begin_epoch(self) -> None:
        """Copy every parameter into the epoch-start arrays (the update ratios' theta_start)."""
        for name, net in self.nets:
            for prefix, layer in net.named_layers():
                for start, p in zip(self._before[name].get(prefix, ()), layer.params.values()):
                    start[...] = p
        self._started = True

    def __call__(self) -> tuple[dict[str, float], Any]:
        """The epoch's figures (``update.*`` only after :meth:`begin_epoch`) and G's output for ``z``."""
        if self.graph is None:
            self._device()
        else:
            self.graph.check_arrays()
            self.graph()
        values = backend.to_numpy(self._out["vector"])
        keys = self._out["update_keys"]
        row = dict(zip(keys, (float(v) for v in values[: len(keys)]))) if self._started else {}
        row.update(_probe_figures(values[len(keys) :], self._out["units"]))
        self._started = False
        return row, self._out["fake"]

    def _device(self) -> None:
        xp = backend.xp_for(self.G.device)
        keys, parts = [], []
        for name, net in self.nets:
            net_keys, ratios = _update_ratios_device(net, name, self._before[name])
            if net_keys:
                keys += net_keys
                parts.append(ratios.astype(xp.float64))
        figures, fake, units = _probe_device(self.G, self.D, self.z, self.real, self.g_loss)
        self._out = {"vector": xp.concatenate([*parts, figures]), "fake": fake, "update_keys": keys, "units": units}

    def _arrays(self) -> list[Any]:
        """Every persistent array the device work reads (what a captured graph holds the addresses of)."""
        arrays = [self.z, self.real]
        for name, net in self.nets:
            for _, layer in net.named_layers():
                arrays += [*layer.params.values(), *layer.buffers.values()]
            arrays += [a for start in self._before[name].values() for a in start]
        return arrays


def _forward_masks(net: Any, x: Any, stop: int) -> tuple[Any, list[Any]]:
    """The network's layers up to ``stop`` in evaluation mode; for each ReLU or LeakyReLU, which of its
    input units are <= 0 for every sample (a boolean array on the device)."""
    masks = []
    for layer in net.layers[:stop]:
        if type(layer).__name__ in ACTIVATIONS:
            masks.append((x.reshape(x.shape[0], -1) <= 0).all(axis=0))
        x = layer.forward(x, training=False)
    return x, masks


def _square_roots(keys: list[str], squares: list[Any]) -> dict[str, float]:
    """``{key: sqrt(square)}``, the squares (0-d arrays of one device) brought to the host at once."""
    if not keys:
        return {}
    xp = backend.xp_for(backend.device_of(squares[0]))
    values = backend.to_numpy(xp.sqrt(xp.stack([xp.asarray(s) for s in squares])))
    return dict(zip(keys, (float(v) for v in np.asarray(values).ravel())))
