"""One GAN training step on networks small enough to print, every gradient checked by finite differences.

    python examples/backprop_walkthrough.py               # seed 0, the plain-NumPy reference kernels
    python examples/backprop_walkthrough.py --seed 3 --g-loss minimax
    python examples/backprop_walkthrough.py --kernels numba

G: z (2) -> Dense(2, 4) -> BatchNorm1d(4) -> ReLU -> Dense(4, 3) -> Tanh -> a 3-d "image"
D: x (3) -> Dense(3, 4) -> LeakyReLU(0.2) -> Dense(4, 1) -> Sigmoid (skipped in training: the loss takes logits)

The step is the one tinygan.train.GANTrainer takes (discriminator_step, then generator_step), with
Sequential.backward unrolled so that every tensor can be printed on its way down: its shape, a few
of its numbers, the same gradient measured by central differences of the loss
(tinygan.gradcheck.numerical_gradient) and their relative error ||a - n|| / (||a|| + ||n||). Then the
Adam updates, and the proof that the generator step leaves D's weights and gradients as they were.
docs/backprop.md derives every equation. Exits with status 1 if any comparison is off by more than
a relative error of 1e-6, so the script doubles as a check of the library's backward passes.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from tinygan import backend
from tinygan import layers as nn
from tinygan.gradcheck import numerical_gradient, relative_error
from tinygan.losses import bce_with_logits, generator_loss
from tinygan.optim import Adam

# float64 central differences with eps 1e-6 have truncation error ~eps^2 and rounding error ~1e-16/eps:
# a correct backward agrees to about 1e-9, a wrong one is off by far more than 1e-6.
TOLERANCE = 1e-6
FD_EPS = 1e-6
# A gradient that is exactly zero comes out of backprop as rounding noise (~1e-18) and out of finite
# differences as 0 or as noise of ~1e-16 / eps: their relative error means nothing, so below this
# norm both count as zero. Every genuine gradient in these networks is many orders above it.
ZERO = 1e-8
LR, BETAS, ADAM_EPS = 2e-4, (0.5, 0.999), 1e-8  # GANConfig's defaults (the DCGAN paper's Adam settings)

# What each layer keeps from its forward pass for its backward (docs/backprop.md, "Activations").
CACHES = {
    "Dense": "x",
    "BatchNorm1d": "xhat, inv_std",
    "ReLU": "y",
    "LeakyReLU": "x",
    "Sigmoid": "y",
    "Tanh": "y",
}

Head = Callable[[Any], tuple[float, Any]]  # logits -> (loss, dloss/dlogits)


def few(a: Any, k: int = 3) -> str:
    flat = np.asarray(a).ravel()
    text = " ".join(f"{v + 0.0:+.3e}" for v in flat[:k])  # + 0.0 prints -0.0 as +0
    return text + (" ..." if flat.size > k else "")


def short(name: str) -> str:
    """ "D[1] LeakyReLU(negative_slope=0.2)" -> "D[1] LeakyReLU": the shapes column carries the sizes."""
    return name if len(name) <= 20 else name.split("(")[0]


def shape_str(a: Any) -> str:
    return "(" + ",".join(str(d) for d in np.shape(a)) + ")"


class Report:
    """Prints aligned rows and records every comparison, so that main() can tell pass from fail."""

    ROW = "  {layer:<20} {tensor:<7} {shape:<6} {left:<36} {right:<36} {err}"

    def __init__(self) -> None:
        self.results: list[tuple[str, float]] = []

    def say(self, text: str = "") -> None:
        print(text)

    def section(self, title: str) -> None:
        self.say()
        self.say(f"== {title} " + "=" * max(3, 110 - len(title)))

    def header(self, left: str, right: str) -> None:
        self.say(self.ROW.format(layer="layer", tensor="tensor", shape="shape", left=left, right=right, err="rel err"))

    def row(self, layer: str, tensor: str, left: Any, right: Any) -> None:
        """One compared pair: ``left`` is what the library computed, ``right`` what it should equal."""
        err = relative_error(left, right)
        if max(np.linalg.norm(left), np.linalg.norm(right)) < ZERO:
            err, verdict = 0.0, "ok, both 0"
        else:
            verdict = "ok" if err <= TOLERANCE else "FAIL"
        self.results.append((f"{layer} {tensor}", err))
        self.say(
            self.ROW.format(
                layer=short(layer),
                tensor=tensor,
                shape=shape_str(left),
                left=few(left),
                right=few(right),
                err=f"{err:.1e} {verdict}",
            )
        )

    def note(self, layer: str, tensor: str, left: str, right: str = "") -> None:
        self.say(self.ROW.format(layer=short(layer), tensor=tensor, shape="", left=left, right=right, err="").rstrip())

    def expect(self, what: str, holds: bool, text: str) -> None:
        """A yes/no check, printed as a sentence."""
        self.results.append((what, 0.0 if holds else float("inf")))
        self.say(f"  {'ok  ' if holds else 'FAIL'} {text}")

    @property
    def failures(self) -> list[tuple[str, float]]:
        return [(name, err) for name, err in self.results if not err <= TOLERANCE]


@contextlib.contextmanager
def buffers_kept(*nets: nn.Sequential) -> Iterator[None]:
    """Finite differences run the forward pass hundreds of times and BatchNorm folds each into its running
    statistics. A training-mode forward never reads them, but the step should leave them as one step would."""
    saved = [
        (layer, {k: v.copy() for k, v in layer.buffers.items()}) for net in nets for _, layer in net.named_layers()
    ]
    try:
        yield
    finally:
        for layer, buffers in saved:
            layer.buffers.update(buffers)


def build(seed: int) -> tuple[nn.Sequential, nn.Sequential]:
    rng = np.random.default_rng([seed, 0])
    f64 = np.float64
    G = nn.Sequential(
        nn.Dense(2, 4, rng=rng, dtype=f64),
        nn.BatchNorm1d(4, dtype=f64),
        nn.ReLU(),
        nn.Dense(4, 3, rng=rng, dtype=f64),
        nn.Tanh(),
        name="G",
    )
    D = nn.Sequential(
        nn.Dense(3, 4, rng=rng, dtype=f64),
        nn.LeakyReLU(0.2),
        nn.Dense(4, 1, rng=rng, dtype=f64),
        nn.Sigmoid(),
        name="D",
    )
    # Two initial values would make this one step a special case. Zero biases produce exact zeros (a sample
    # that ReLU zeroes entirely comes out of Dense(4, 3) as 0, of Tanh as 0 and of D's first Dense as 0),
    # and an exact 0 sits on LeakyReLU's kink, where the derivative and its finite difference disagree.
    # gamma = 1, beta = 0 would hide a BatchNorm backward that mixes up gamma and its gradient.
    for layer in (*G.layers, *D.layers):
        if "b" in layer.params:
            layer.params["b"][:] = rng.uniform(-0.1, 0.1, layer.params["b"].shape)
    bn = G.layers[1]
    bn.params["gamma"][:] = rng.uniform(0.5, 1.5, 4)
    bn.params["beta"][:] = rng.uniform(-0.5, 0.5, 4)
    return G, D


def forward_chain(report: Report, chain: list[nn.Layer], x: Any) -> list[Any]:
    """Run ``chain`` in training mode, printing each layer; returns [input, output 0, output 1, ...]."""
    acts = [x]
    for layer in chain:
        acts.append(layer.forward(acts[-1], training=True))
        report.say(
            f"  {short(layer.name):<20} {shape_str(acts[-2]):>6} -> {shape_str(acts[-1]):<6}  "
            f"caches {CACHES[type(layer).__name__]:<14} output {few(acts[-1])}"
        )
    return acts


def backward_and_check(report: Report, chain: list[nn.Layer], acts: list[Any], head: Head, frozen: set[int]) -> None:
    """Backprop through ``chain`` one layer at a time, then check every gradient by finite differences.

    This is Sequential.backward unrolled: layers whose id is in ``frozen`` get ``param_grads=False``,
    the first layer ``input_grad=False`` (nothing below it is trained).
    """

    def loss_from(k: int, a: Any) -> float:
        """The loss as a function of the input of chain[k], which finite differences perturb."""
        for layer in chain[k:]:
            a = layer.forward(a, training=True)
        return head(a)[0]

    # Every analytic gradient first: each finite-difference forward overwrites the layers' caches.
    loss, dlogits = head(acts[-1])
    grads: list[tuple[int, str, Any]] = []
    dy = dlogits
    for k in range(len(chain) - 1, -1, -1):
        layer = chain[k]
        param_grads = id(layer) not in frozen
        before = {key: g.copy() for key, g in layer.grads.items()}
        dy = layer.backward(dy, param_grads=param_grads, input_grad=k > 0)
        for key in layer.params:
            # layer.grads accumulates (+=); this backward's share is the difference.
            grads.append((k, "d" + key, layer.grads[key] - before[key] if param_grads else None))
        grads.append((k, "dx", dy))

    report.say(f"  loss = {loss:.10f}")
    report.say()
    report.header("backprop (first 3 values)", "finite differences (first 3)")
    logits = acts[-1].copy()
    report.row("loss", "dlogits", dlogits, numerical_gradient(lambda: head(logits)[0], logits, FD_EPS))
    for k, tensor, analytic in grads:
        layer = chain[k]
        if tensor == "dx":
            if analytic is None:
                report.note(layer.name, "dx", "not computed: input_grad=False", "(nothing below it is trained here)")
                continue
            x_k = acts[k].copy()
            report.row(
                layer.name, "dx", analytic, numerical_gradient(lambda k=k, x_k=x_k: loss_from(k, x_k), x_k, FD_EPS)
            )
            continue
        numeric = numerical_gradient(lambda: loss_from(0, acts[0]), layer.params[tensor[1:]], FD_EPS)
        if analytic is None:
            report.note(layer.name, tensor, "not computed: param_grads=False", few(numeric))
        else:
            report.row(layer.name, tensor, analytic, numeric)


def discriminator_step(report: Report, G: nn.Sequential, D: nn.Sequential, opt_d: Adam, real: Any, z: Any) -> None:
    n = real.shape[0]
    report.section("1. Discriminator step (GANTrainer.discriminator_step)")
    report.say("forward: fake = G(z), then D on [real; fake] with targets [1]*n + [0]*n")
    fake = G.forward(z, training=True)
    report.say(f"  {'G(z)':<20} {shape_str(z):>6} -> {shape_str(fake):<6}  (G gets no gradient in this step)")
    batch = np.concatenate([real, fake])
    targets = np.concatenate([np.ones((n, 1)), np.zeros((n, 1))])
    # D.forward(x, logits=True) stops before the final Sigmoid: the loss applies it, in a stable form.
    chain = D.layers[:-1]
    acts = forward_chain(report, chain, batch)
    report.say(f"  {short(D.layers[-1].name):<21} skipped: logits=True, the sigmoid lives inside bce_with_logits")
    report.say()
    report.say("backward: D.backward(dlogits, input_grad=False), the loss head being bce_with_logits(logits, targets)")
    opt_d.zero_grad()
    backward_and_check(report, chain, acts, lambda logits: bce_with_logits(logits, targets), frozen=set())
    explain_fused_sigmoid(report, D.layers[-1], acts[-1], targets)
    adam_step(report, opt_d, D, "D")


def explain_fused_sigmoid(report: Report, sigmoid: nn.Layer, logits: Any, targets: Any) -> None:
    report.say()
    report.say(
        "why the loss takes logits: the unfused path, Sigmoid.backward(dL/dp), gives the same dlogits = (p - t)/n"
    )
    n = logits.size
    p = sigmoid.forward(logits, training=True)
    dp = (-targets / p + (1 - targets) / (1 - p)) / n
    _, fused = bce_with_logits(logits, targets)
    report.header("Sigmoid.backward(dL/dp)", "fused (sigmoid(z) - t) / n")
    report.row(sigmoid.name, "dz", sigmoid.backward(dp), fused)
    far = np.array([[40.0]])
    with np.errstate(divide="ignore"):
        naive = float(-np.log(1 - sigmoid.forward(far)).item())
    stable = bce_with_logits(far, 0.0)[0]
    report.say(
        f"  and at z = 40, t = 0: -log(1 - sigmoid(z)) = {naive} (sigmoid rounded to 1), "
        f"max(z,0) - z t + log1p(exp(-|z|)) = {stable}"
    )


def generator_step(report: Report, G: nn.Sequential, D: nn.Sequential, opt_g: Adam, z: Any, kind: str) -> None:
    report.section("2. Generator step through the frozen D (GANTrainer.generator_step)")
    report.say(f"forward: fresh z -> G -> D (logits), loss head generator_loss(logits, kind={kind!r})")
    d_params = {f"{i}.{k}": v.copy() for i, layer in D.named_layers() for k, v in layer.params.items()}
    d_grads = {f"{i}.{k}": v.copy() for i, layer in D.named_layers() for k, v in layer.grads.items()}
    chain = G.layers + D.layers[:-1]
    acts = forward_chain(report, chain, z)
    report.say()
    report.say("backward: D.backward(dlogits, param_grads=False) -> dfake, then G.backward(dfake, input_grad=False)")
    report.say("  D's weights get no gradient (Adam(G) will not touch them), yet the loss depends on them: the")
    report.say("  finite-difference column shows the gradient that param_grads=False saves computing")
    opt_g.zero_grad()
    D_ids = {id(layer) for layer in D.layers}
    backward_and_check(report, chain, acts, lambda logits: generator_loss(logits, kind=kind), frozen=D_ids)
    report.say("  (G[0] db is 0 by construction: BatchNorm subtracts each feature's batch mean, and with it any bias")
    report.say("   added just before it; the zero comes out of backprop as rounding noise, ~1e-18)")
    report.say()
    same_grads = all(
        np.array_equal(d_grads[f"{i}.{k}"], g) for i, layer in D.named_layers() for k, g in layer.grads.items()
    )
    report.expect(
        "D grads untouched", same_grads, "D's .grads are still the D step's: param_grads=False never wrote them"
    )
    adam_step(report, opt_g, G, "G")
    report.say()
    change = max(
        float(np.max(np.abs(layer.params[k] - d_params[f"{i}.{k}"])))
        for i, layer in D.named_layers()
        for k in layer.params
    )
    report.expect(
        "D frozen", change == 0.0, f"D's weights after the whole G step: max |change| = {change} (bitwise equal)"
    )


def adam_step(report: Report, opt: Adam, net: nn.Sequential, net_name: str) -> None:
    """opt.step(), then each parameter's change against Adam's first-step closed form."""
    report.say()
    beta1, beta2 = opt.beta1, opt.beta2
    report.say(f"Adam({net_name}) step {opt.step_count + 1}: lr {opt.lr:g}, betas ({beta1}, {beta2}), eps {opt.eps:g}")
    report.say("  bias correction makes the first step exactly -lr g / (|g| + eps): every weight moves by lr whatever")
    report.say("  the size of its gradient, unless |g| << eps. Without the correction m / sqrt(v) would be")
    report.say(f"  (1 - beta1) / sqrt(1 - beta2) = {(1 - beta1) / np.sqrt(1 - beta2):.1f} times g / |g|.")
    before = {(name, key): p.copy() for name, layer in net.named_layers() for key, p in layer.params.items()}
    opt.step()
    report.header("change / lr", "-g / (|g| + eps)")
    for name, layer in net.named_layers():
        for key, p in layer.params.items():
            g = layer.grads[key]
            # Step 1: m = (1 - beta1) g and v = (1 - beta2) g^2, which the corrections divide back out.
            report.row(layer.name, key, (p - before[(name, key)]) / opt.lr, -g / (np.abs(g) + opt.eps))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seed", type=int, default=0, help="seeds the weights, the data and the noise (default 0)")
    parser.add_argument(
        "--batch-size", type=int, default=4, help="real (and generated) samples per step, at least 3 (default 4)"
    )
    parser.add_argument(
        "--g-loss",
        choices=("nonsaturating", "minimax"),
        default="nonsaturating",
        help="the generator's loss (default nonsaturating)",
    )
    parser.add_argument(
        "--kernels",
        choices=backend.CPU_IMPLEMENTATIONS,
        default="reference",
        help="CPU kernels: the readable NumPy 'reference' ones (default) or the jitted 'numba' ones",
    )
    args = parser.parse_args(argv)
    if args.batch_size < 3:
        # Two values per feature normalize to -1 and +1 whatever they are: BatchNorm's output then barely
        # depends on its input (only through eps), and its ~1e-7 input gradient drowns in finite-difference noise.
        parser.error("--batch-size must be at least 3: BatchNorm maps any 2 values per feature to about -1 and +1")

    # The kernel choice is process-wide; put it back so that importing and calling main() has no side effect.
    previous = backend.get_cpu_kernels()
    backend.set_cpu_kernels(args.kernels)
    try:
        return walkthrough(args.seed, args.batch_size, args.g_loss, args.kernels)
    finally:
        backend.set_cpu_kernels(previous)


def walkthrough(seed: int, n: int, kind: str, kernels: str) -> int:
    start = time.perf_counter()
    report = Report()
    G, D = build(seed)
    rng = np.random.default_rng([seed, 1])
    real = rng.normal([0.5, -0.5, 0.25], 0.1, size=(n, 3))  # the "data set": a blob in R^3, inside tanh's range
    report.say(f"tinygan backprop walkthrough: seed {seed}, batch {n}, float64, kernels {kernels}, g_loss {kind}")
    report.say(f"  G = {G!r}")
    report.say(f"  D = {D!r}")
    report.say(
        f"every gradient beside its central difference (eps {FD_EPS:g}); a row fails above rel err {TOLERANCE:g}"
    )
    opt_d = Adam(D, lr=LR, betas=BETAS, eps=ADAM_EPS)
    opt_g = Adam(G, lr=LR, betas=BETAS, eps=ADAM_EPS)
    with buffers_kept(G, D):
        discriminator_step(report, G, D, opt_d, real, rng.standard_normal((n, 2)))
        generator_step(report, G, D, opt_g, rng.standard_normal((n, 2)), kind)

    report.section("Summary")
    failures = report.failures
    worst = max(err for _, err in report.results)
    seconds = time.perf_counter() - start
    if failures:
        report.say(f"FAILED: {len(failures)} of {len(report.results)} checks off by more than {TOLERANCE:g}:")
        for name, err in failures:
            report.say(f"  {name}: rel err {err:.1e}")
        report.say(f"({seconds:.2f} s)")
        return 1
    report.say(f"all {len(report.results)} checks passed (largest rel err {worst:.1e}) in {seconds:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
