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
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tinygan import backend
from tinygan.losses import generator_loss

__all__ = ["ACTIVATIONS", "gradient_norms", "layer_names", "params_snapshot", "probe", "update_ratios"]

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
        return {}
    xp = backend.xp_for(net.device)
    moved_all = xp.stack([xp.asarray(m) for m in moved])
    size_all = xp.maximum(xp.stack([xp.asarray(s) for s in size]), 1e-30)  # a layer of zeros moves from 0
    return dict(zip(keys, (float(v) for v in backend.to_numpy(xp.sqrt(moved_all / size_all)))))


def probe(G: Any, D: Any, z: Any, real: Any, g_loss: str = "nonsaturating") -> tuple[dict[str, float], Any]:
    """``dead.G``, ``dead.D`` and ``g_input_grad_probe`` on the probe batch (see the module docstring): noise
    ``z`` (n, latent) and ``real`` images (any number), on the networks' device. Returns the figures and
    G's output for ``z`` (what ``G.forward(z, training=False)`` gives: the run's sample grid reuses it)."""
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
    g_input_grad, g_dead_count, d_dead_count = (float(v) for v in backend.to_numpy(figures))
    g_units, d_units = sum(m.size for m in g_masks), sum(m.size for m in real_masks)
    return {
        "g_input_grad_probe": g_input_grad,
        "dead.G": g_dead_count / g_units if g_units else 0.0,
        "dead.D": d_dead_count / d_units if d_units else 0.0,
    }, fake


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
