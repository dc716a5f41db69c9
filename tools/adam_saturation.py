"""Does the minimax generator loss still starve G when Adam does the update? A measurement, not a derivation.

    python tools/adam_saturation.py                 # the numbers docs/backprop.md section 11 quotes
    python tools/adam_saturation.py --bias -8 --steps 400

Takes the walkthrough's two tiny networks (examples/backprop_walkthrough.py: G 2-4-3 with BatchNorm, D 3-4-1),
makes D dominant by setting the bias of its output unit to --bias (-12: D(G(z)) about 1e-5, the fakes
rejected outright), keeps D fixed, and trains G alone for --steps Adam steps (lr 2e-4, betas (0.5, 0.999),
eps 1e-8, tinygan's defaults) twice from the same weights and the same noise: once with the minimax loss,
once with the non-saturating one. It prints

1. the gradient G receives at the first step: |dW| under each loss and their ratio, the spread of the
   per-sample factors (D(G(z_i)) for minimax, 1 - D(G(z_i)) for non-saturating) and the cosine between the
   two batch gradients: the direction, not only the size, differs;
2. how far G's weights moved after all the steps, in units of lr (mean over G's weight elements of
   |theta_end - theta_start| / lr), and the share of gradient elements with |g| below 10 eps, where Adam's
   step is no longer about lr;
3. the same minimax run with eps 1e-14, to show what is left of the gap once eps is out of the way;
4. a run that switches from non-saturating to minimax half-way: the gradient's scale drops suddenly, and
   Adam's v, which remembers about 1 / (1 - beta2) = 1000 steps, shrinks the steps for a long while.

Runs in a second or two on the CPU, float64, reference kernels.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from tinygan import backend
from tinygan import layers as nn
from tinygan.losses import generator_loss
from tinygan.optim import Adam

ROOT = Path(__file__).resolve().parents[1]
LR, BETAS = 2e-4, (0.5, 0.999)


def walkthrough_networks(seed: int) -> tuple[nn.Sequential, nn.Sequential]:
    """The walkthrough's build(): the same networks, the same initial weights."""
    spec = importlib.util.spec_from_file_location("backprop_walkthrough", ROOT / "examples" / "backprop_walkthrough.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build(seed)


def g_weights(G: nn.Sequential) -> list[Any]:
    """G's weight matrices and BatchNorm's scale and shift (not the Dense biases: the one before BatchNorm has
    an exactly-zero gradient, section 6, and would only measure rounding noise)."""
    return [layer.params[k] for _, layer in G.named_layers() for k in layer.params if k in ("W", "gamma", "beta")]


def g_grads(G: nn.Sequential) -> list[Any]:
    return [layer.grads[k] for _, layer in G.named_layers() for k in layer.params if k in ("W", "gamma", "beta")]


def flat(arrays: list[Any]) -> np.ndarray:
    return np.concatenate([np.ravel(a) for a in arrays])


def generator_backward(G: nn.Sequential, D: nn.Sequential, z: np.ndarray, kind: str) -> np.ndarray:
    """One generator step's forward and backward (GANStep.generator_step without the Adam step).
    Returns D(G(z)) per sample."""
    fake = G.forward(z, training=True)
    logits = D.forward(fake, training=True, logits=True)
    _, dlogits = generator_loss(logits, kind=kind)
    G.zero_grad()
    dfake = D.backward(dlogits, param_grads=False)
    G.backward(dfake, input_grad=False)
    return 1.0 / (1.0 + np.exp(-logits.ravel()))


def train_g(
    seed: int, bias: float, steps: int, kinds: list[str], n: int, eps: float = 1e-8
) -> tuple[float, float, list[float]]:
    """Train G for len(kinds) steps, kinds[t] being step t's loss; returns (mean |dtheta| / lr, share of
    gradient elements with |g| < 10 eps over all steps, per-step mean |dtheta| / lr)."""
    G, D = walkthrough_networks(seed)
    D.layers[2].params["b"][:] = bias
    opt = Adam(G, lr=LR, betas=BETAS, eps=eps)
    noise = np.random.default_rng([seed, 2])
    start = flat(g_weights(G)).copy()
    small, total, per_step = 0, 0, []
    for t in range(steps):
        generator_backward(G, D, noise.standard_normal((n, 2)), kinds[t])
        g = flat(g_grads(G))
        small += int((np.abs(g) < 10 * eps).sum())
        total += g.size
        before = flat(g_weights(G)).copy()
        opt.step()
        per_step.append(float(np.mean(np.abs(flat(g_weights(G)) - before)) / LR))
    moved = float(np.mean(np.abs(flat(g_weights(G)) - start)) / LR)
    return moved, small / total, per_step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bias", type=float, default=-12.0, help="D's output bias: how dominant D is (default -12)")
    parser.add_argument("--steps", type=int, default=200, help="Adam steps of G (default 200)")
    parser.add_argument("--batch-size", type=int, default=8, help="samples per step (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="the walkthrough's weights and the noise (default 0)")
    args = parser.parse_args(argv)
    if args.steps < 2 or args.batch_size < 3:
        parser.error("--steps must be at least 2 and --batch-size at least 3 (BatchNorm, see the walkthrough)")

    previous = backend.get_cpu_kernels()
    backend.set_cpu_kernels("reference")
    try:
        report(args.seed, args.bias, args.steps, args.batch_size)
    finally:
        backend.set_cpu_kernels(previous)
    return 0


def report(seed: int, bias: float, steps: int, n: int) -> None:
    print(f"walkthrough networks, seed {seed}, D's output bias {bias:g}, batch {n}, Adam lr {LR:g} betas {BETAS}")

    # 1. The first step's gradient under each loss, from the same weights and the same z.
    z = np.random.default_rng([seed, 2]).standard_normal((n, 2))
    grads, d_fake = {}, None
    for kind in ("minimax", "nonsaturating"):
        G, D = walkthrough_networks(seed)
        D.layers[2].params["b"][:] = bias
        d_fake = generator_backward(G, D, z, kind)
        grads[kind] = flat(g_grads(G)).copy()
    mm, ns = (np.linalg.norm(grads[k]) for k in ("minimax", "nonsaturating"))
    cosine = float(grads["minimax"] @ grads["nonsaturating"] / (mm * ns))
    print()
    print("1. the gradient G receives at step 1")
    print(f"   D(G(z_i)) over the batch: {d_fake.min():.2e} to {d_fake.max():.2e}")
    print(f"   per-sample factor, minimax D(G(z_i)):           max/min = {d_fake.max() / d_fake.min():.1f}")
    print(
        f"   per-sample factor, non-saturating 1 - D(G(z_i)): max/min = {(1 - d_fake.min()) / (1 - d_fake.max()):.6f}"
    )
    print(f"   |dW| minimax {mm:.3e}, non-saturating {ns:.3e}: minimax {ns / mm:,.0f}x smaller")
    print(f"   cosine between the two batch gradients: {cosine:.4f}")

    # 2. Where G's weights are after `steps` Adam steps.
    print()
    print(
        f"2. after {steps} Adam steps of G against the fixed D (mean |theta_end - theta_start| / lr over G's weights)"
    )
    for kind in ("minimax", "nonsaturating"):
        moved, small, _ = train_g(seed, bias, steps, [kind] * steps, n)
        print(f"   {kind:<14} moved {moved:6.1f} lr;  gradient elements with |g| < 10 eps: {100 * small:5.1f}%")

    # 3. Take eps out of the way.
    moved, small, _ = train_g(seed, bias, steps, ["minimax"] * steps, n, eps=1e-14)
    print()
    print("3. minimax again with eps 1e-14 instead of 1e-8")
    print(f"   minimax        moved {moved:6.1f} lr;  gradient elements with |g| < 10 eps: {100 * small:5.1f}%")

    # 4. A sudden drop in the gradient's scale: switch losses half-way.
    half = steps // 2
    _, _, per_step = train_g(seed, bias, steps, ["nonsaturating"] * half + ["minimax"] * (steps - half), n)
    print()
    print(f"4. non-saturating for {half} steps, then minimax: mean |step| / lr per step")
    windows = [(0, 10), (half - 10, half), (half, half + 1), (half + 10, half + 20), (steps - 10, steps)]
    for a, b in windows:
        label = f"steps {a + 1}-{b}" if b - a > 1 else f"step {a + 1}"
        print(f"   {label:<14} {np.mean(per_step[a:b]):.2e}")


if __name__ == "__main__":
    raise SystemExit(main())
