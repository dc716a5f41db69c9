# %% [markdown]
# # Backprop in tinygan, live
#
# Every backward pass of docs/backprop.md, run on tensors small enough to print and checked against
# finite differences. Run it as a script (`python examples/backprop_walkthrough.py`), or open it as a
# notebook: the `# %%` lines are cells for VS Code and for Jupyter with jupytext. In a notebook each part
# runs in its own cell.

# %%
"""Every backward pass of a tiny GAN, printed and checked by finite differences.

    python examples/backprop_walkthrough.py                     # seed 0, the plain-NumPy reference kernels
    python examples/backprop_walkthrough.py --seed 3 --g-loss minimax
    python examples/backprop_walkthrough.py --kernels numba     # the jitted kernels, checked the same way
    python examples/backprop_walkthrough.py --break batchnorm   # a deliberately wrong kernel: which check fails?
    python examples/backprop_walkthrough.py --exercise dropout  # your exercises/dropout.py, checked
    python examples/backprop_walkthrough.py --exercise dropout=my_dropout.py

Part 1 takes single layers (Dropout, BatchNorm1d, Conv2d, ConvTranspose2d) on tensors printed in full,
BatchNorm's intermediates line by line against the guide's equations. Part 2 shows why a correct
backward agrees with finite differences to about 1e-9 in float64. Part 3 takes one GAN training step,
the one tinygan.train.GANTrainer takes, on networks small enough to print:

G: z (2) -> Dense(2, 4) -> BatchNorm1d(4) -> ReLU -> Dense(4, 3) -> Tanh -> a 3-d "image"
D: x (3) -> Dense(3, 4) -> LeakyReLU(0.2) -> Dense(4, 1) -> Sigmoid (skipped in training: the loss takes logits)

with Sequential.backward unrolled so that every tensor is compared, on its way down, with central
differences of the loss (tinygan.gradcheck.numerical_gradient) by their relative error
||a - n|| / (||a|| + ||n||); then the Adam updates, and the proof that the generator step leaves D's
weights and gradients as they were. Part 4 puts the minimax and the non-saturating generator loss side
by side against a dominant D. docs/backprop.md derives every equation.

Exits with status 1 if any comparison is off by more than a relative error of 1e-6 (or an exercise is
not written yet, or does not load, or an option makes no sense: one error line), so the script doubles
as a check of the library's backward passes.
--break NAME swaps in one of the deliberately broken kernels of examples/broken_kernels.py;
--exercise NAME[=PATH] swaps in the learner's kernels from exercises/NAME.py (or PATH).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np

from tinygan import backend, cli
from tinygan import layers as nn
from tinygan.gradcheck import numerical_gradient, relative_error
from tinygan.losses import bce_with_logits, generator_loss
from tinygan.optim import Adam

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# float64 central differences with eps 1e-6 have truncation error ~eps^2 and rounding error ~1e-16/eps:
# a correct backward agrees to about 1e-9 (part 2 shows why), a wrong one is off by far more than 1e-6.
TOLERANCE = 1e-6
FD_EPS = 1e-6
# A gradient that is exactly zero comes out of backprop as rounding noise (~1e-18) and out of finite
# differences as 0 or as noise of ~1e-16 / eps: their relative error means nothing, so below this
# norm both count as zero. Every genuine gradient in these networks is many orders above it.
ZERO = 1e-8
LR, BETAS, ADAM_EPS = 2e-4, (0.5, 0.999), 1e-8  # GANConfig's defaults (the DCGAN paper's Adam settings)
WIDTH = 98  # every line fits in 100 columns

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


class Options(NamedTuple):
    seed: int = 0
    batch_size: int = 4
    g_loss: str = "nonsaturating"


# %% [markdown]
# ## Printing and checking
#
# `Report.row` prints one computed gradient beside what it should equal and records the comparison;
# `Report.tensor` prints a small array in full.


# %%
def few(a: Any, k: int = 2) -> str:
    flat = np.asarray(a).ravel()
    return " ".join(f"{v + 0.0:+.3e}" for v in flat[:k])  # + 0.0 prints -0.0 as +0


def short(name: str) -> str:
    """ "D[1] LeakyReLU(negative_slope=0.2)" -> "D[1] LeakyReLU": the shapes column carries the sizes."""
    return name if len(name) <= 17 else name.split("(")[0]


def shape_str(a: Any) -> str:
    return "(" + ",".join(str(d) for d in np.shape(a)) + ")"


def full(a: Any, indent: int = 4) -> str:
    """A small array in full, four decimals, wrapped to fit the page."""
    a = np.asarray(a)
    if a.dtype.kind == "f":
        a = a + 0.0  # -0.0 (a dropped unit times a negative x) prints as 0
    text = np.array2string(
        a,
        max_line_width=WIDTH - indent,
        precision=4,
        suppress_small=True,
        sign=" ",
        floatmode="fixed",
        threshold=10_000,
    )
    return "\n".join(" " * indent + line for line in text.splitlines())


class Report:
    """Prints aligned rows and records every comparison, so that main() can tell pass from fail."""

    ROW = "  {layer:<17} {tensor:<7} {shape:<9} {left:<21} {right:<21} {err}"

    def __init__(self) -> None:
        self.results: list[tuple[str, float]] = []

    def say(self, text: str = "") -> None:
        print(text)

    def section(self, title: str) -> None:
        self.say()
        self.say(f"== {title} " + "=" * max(3, WIDTH - 4 - len(title)))

    def header(self, left: str, right: str) -> None:
        self.say(self.ROW.format(layer="layer", tensor="tensor", shape="shape", left=left, right=right, err="rel err"))

    def row(self, layer: str, tensor: str, left: Any, right: Any) -> None:
        """One compared pair: ``left`` is what the library computed, ``right`` what it should equal."""
        err = relative_error(left, right)
        if max(np.linalg.norm(left), np.linalg.norm(right)) < ZERO:
            err, verdict = 0.0, "ok, both 0"
        else:
            verdict = "ok" if err <= TOLERANCE else "FAIL"
        self.results.append((f"{short(layer)} {tensor}", err))
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

    def tensor(self, name: str, a: Any, what: str = "") -> None:
        """A tensor in full, under a line naming it (and the equation that made it)."""
        self.say(f"  {name} {shape_str(a)}" + (f"   {what}" if what else ""))
        self.say(full(a))

    def expect(self, what: str, holds: bool, text: str) -> None:
        """A yes/no check, printed as a sentence."""
        self.results.append((what, 0.0 if holds else float("inf")))
        self.say(f"  {'ok  ' if holds else 'FAIL'} {text}")

    @property
    def failures(self) -> list[tuple[str, float]]:
        return [(name, err) for name, err in self.results if not err <= TOLERANCE]


def replaying(rng: np.random.Generator) -> Callable[[], None]:
    """A callback that puts ``rng`` back where it is now: call it before every forward to replay its draws."""
    state = rng.bit_generator.state
    return lambda: setattr(rng.bit_generator, "state", state)


def check_layer_rows(
    report: Report, layer: nn.Layer, x: Any, dy: Any, before_forward: Callable[[], None] | None = None
) -> Any:
    """layer.backward(dy) against central differences of L = sum(layer(x) * dy), for x and every parameter.
    Returns dx. ``before_forward`` runs before every forward (Dropout's mask replay)."""

    def forward() -> Any:
        if before_forward is not None:
            before_forward()
        return layer.forward(x, training=True)

    def loss() -> float:
        return float((forward() * dy).sum())

    forward()
    layer.zero_grad()
    dx = layer.backward(dy)
    grads = {key: g.copy() for key, g in layer.grads.items()}
    report.header("backprop (first 2)", "finite differences")
    report.row(layer.name, "dx", dx, numerical_gradient(loss, x, FD_EPS))
    for key, param in layer.params.items():
        report.row(layer.name, "d" + key, grads[key], numerical_gradient(loss, param, FD_EPS))
    return dx


def notebook_cell(part: Callable[[Report, Options], None]) -> None:
    """Run ``part`` right here when this file is open as a notebook; a script runs every part from main()."""
    if __name__ == "__main__" and "ipykernel" in sys.modules:
        with kernels_chosen("reference"):
            part(Report(), Options())


@contextlib.contextmanager
def kernels_chosen(kernels: str) -> Iterator[None]:
    """The CPU kernel choice is process-wide; put it back afterwards, so that calling main() has no side effect."""
    previous = backend.get_cpu_kernels()
    backend.set_cpu_kernels(kernels)
    try:
        yield
    finally:
        backend.set_cpu_kernels(previous)


# %% [markdown]
# ## Part 1, Dropout: the backward replays the forward's mask (guide, section 5)
#
# `y = x * mask / (1 - p)` with the mask drawn in the forward pass. For a fixed mask `y` is linear in `x`,
# so `dx = dy * mask / (1 - p)`: the same mask. Finite differences must replay it too, or every
# evaluation of the loss sees another network.


# %%
def dropout_part(report: Report, opts: Options) -> None:
    report.section("1a. Dropout(p=0.4): the mask of the forward pass is the backward's")
    rng = np.random.default_rng([opts.seed, 10])
    layer = nn.Dropout(0.4, rng=int(rng.integers(2**31)))
    layer.name = "Dropout(p=0.4)"
    x = rng.normal(size=(2, 5))
    replay = replaying(layer.rng)
    replay()
    y = layer.forward(x, training=True)
    report.tensor("x", x)
    report.tensor("mask", layer.cache.astype(int), "drawn in the forward: 1 = kept (probability 1 - p = 0.6)")
    report.tensor("y", y, "= x * mask / (1 - p): kept units scaled by 1/0.6, so that E[y] = x")
    dy = rng.normal(size=y.shape)
    report.tensor("dy", dy, "a random upstream gradient (never all ones: see BatchNorm below)")
    dx = layer.backward(dy)
    report.tensor("dx", dx, "= dy * mask / (1 - p), the same mask")
    report.say("  finite differences of L = sum(y * dy), the layer's random generator reset before each forward:")
    check_layer_rows(report, layer, x, dy, before_forward=replay)

    def fresh_loss() -> float:
        return float((layer.forward(x, training=True) * dy).sum())

    replay()
    layer.forward(x, training=True)
    fresh = numerical_gradient(fresh_loss, x.copy(), FD_EPS)
    report.say(
        f"  without the replay each forward draws a new mask: the 'gradient' is noise of size {np.abs(fresh).max():.0e}"
    )


notebook_cell(dropout_part)


# %% [markdown]
# ## Part 1, BatchNorm: every intermediate of the guide's derivation (section 6)
#
# The forward in six named lines, the backward walked from the bottom up, and the one-line formula the
# kernel uses, all on a (4, 3) input: M = 4 values per channel, 3 channels.


# %%
def batchnorm_part(report: Report, opts: Options) -> None:
    report.section("1b. BatchNorm1d(3): the guide's lines, one by one, against the kernel")
    rng = np.random.default_rng([opts.seed, 11])
    layer = nn.BatchNorm1d(3, dtype=np.float64)
    layer.name = "BatchNorm1d(3)"
    gamma, beta = layer.params["gamma"], layer.params["beta"]
    gamma[:] = rng.uniform(0.5, 1.5, 3)
    beta[:] = rng.uniform(-0.5, 0.5, 3)
    x = rng.normal([1.0, -2.0, 0.5], [1.0, 0.5, 2.0], size=(4, 3))
    eps = layer.eps
    M = x.shape[0]
    report.tensor("x", x, f"M = {M} samples (rows) per channel (column)")
    report.tensor("gamma", gamma)
    report.tensor("beta", beta)
    report.say("  forward, the guide's lines:")
    mean = x.mean(axis=0)
    centered = x - mean
    var = (centered**2).mean(axis=0)
    inv_std = 1 / np.sqrt(var + eps)
    xhat = centered * inv_std
    y_lines = gamma * xhat + beta
    report.tensor("mean", mean, "= (1/M) sum x")
    report.tensor("centered", centered, "= x - mean")
    report.tensor("var", var, "= (1/M) sum centered^2   (biased)")
    report.tensor("inv_std", inv_std, f"= 1 / sqrt(var + eps), eps = {eps:g}")
    report.tensor("xhat", xhat, "= centered * inv_std")
    y = layer.forward(x, training=True)
    report.tensor("y", y, "= gamma * xhat + beta")
    K = backend.kernels("cpu")
    _, k_mean, k_var, k_xhat, k_inv_std = K.batchnorm_forward(x, gamma, beta, eps)
    report.header("kernel (first 2)", "the guide's lines")
    for name, kernel_value, line_value in (
        ("mean", k_mean, mean),
        ("var", k_var, var),
        ("inv_std", k_inv_std, inv_std),
        ("xhat", k_xhat, xhat),
        ("y", y, y_lines),
    ):
        report.row(layer.name, name, kernel_value, line_value)

    dy = rng.normal(size=y.shape)
    report.say()
    report.tensor("dy", dy, "a random upstream gradient")
    report.say("  backward, the guide's lines from the bottom up (x is used three times: directly, in mean, in var):")
    dbeta = dy.sum(axis=0)
    dgamma = (dy * xhat).sum(axis=0)
    dxhat = gamma * dy
    dinv_std = (dxhat * centered).sum(axis=0)
    dvar = dinv_std * -0.5 * (var + eps) ** -1.5
    dcentered = dxhat * inv_std + dvar * 2 * centered / M
    dmean = -dcentered.sum(axis=0)
    dx_lines = dcentered + dmean / M
    report.tensor("dbeta", dbeta, "= sum dy")
    report.tensor("dgamma", dgamma, "= sum dy * xhat")
    report.tensor("dxhat", dxhat, "= gamma * dy")
    report.tensor("dinv_std", dinv_std, "= sum dxhat * centered")
    report.tensor("dvar", dvar, "= dinv_std * (-1/2) (var + eps)^(-3/2)")
    report.tensor("dcentered", dcentered, "= dxhat * inv_std + dvar * 2 centered / M")
    report.tensor("dmean", dmean, "= -sum dcentered")
    report.tensor("dx", dx_lines, "= dcentered + dmean / M")
    layer.zero_grad()
    dx = layer.backward(dy)
    report.say("  the kernel's one line: dx = gamma * inv_std * (dy - dbeta / M - xhat * dgamma / M)")
    report.header("kernel (first 2)", "the guide's lines")
    report.row(layer.name, "dx", dx, dx_lines)
    report.row(layer.name, "dgamma", layer.grads["gamma"], dgamma)
    report.row(layer.name, "dbeta", layer.grads["beta"], dbeta)
    report.say("  and both against finite differences of L = sum(y * dy):")
    check_layer_rows(report, layer, x, dy)
    ones = np.ones_like(y)
    layer.forward(x, training=True)
    layer.zero_grad()
    dx_ones = layer.backward(ones)
    report.say(f"  with dy = ones (the gradient of y.sum()) dx is {np.abs(dx_ones).max():.0e}: zero for every x, and a")
    report.say("  check with y.sum() would pass a backward that returned zeros; hence the random dy")
    layer.buffers["running_mean"][:], layer.buffers["running_var"][:] = 0.0, 1.0  # as if never run


notebook_cell(batchnorm_part)


# %% [markdown]
# ## Part 1, Conv2d and ConvTranspose2d (sections 7 and 8)
#
# A 3x3 convolution at stride 2 and padding 1 on a 5x5 image: its windows overlap, so some input pixels
# feed several outputs (forks), and col2im must add their gradients. Then the transposed convolution,
# whose forward is the convolution's input gradient.


# %%
def conv_part(report: Report, opts: Options) -> None:
    report.section("1c. Conv2d(2, 2, kernel 3, stride 2, padding 1) on a 5x5 image: im2col, col2im")
    rng = np.random.default_rng([opts.seed, 12])
    K = backend.kernels("cpu")
    layer = nn.Conv2d(2, 2, 3, stride=2, padding=1, rng=rng, dtype=np.float64)
    layer.name = "Conv2d(2, 2)"
    layer.params["b"][:] = rng.uniform(-0.1, 0.1, 2)
    x = rng.normal(size=(1, 2, 5, 5))
    y = layer.forward(x, training=True)
    report.tensor("x", x, "(N, C, H, W)")
    cols = K.im2col(x, (3, 3), (2, 2), (1, 1))
    report.tensor("cols = im2col(x)", cols, "one column per output pixel, one row per (c, i, j)")
    report.tensor("y", y, "= W.reshape(2, 18) @ cols + b, as (N, O, Ho, Wo)")
    covered = K.col2im(np.ones_like(cols), x.shape, (3, 3), (2, 2), (1, 1))[0, 0]
    report.tensor("windows per pixel", covered.astype(int), "= col2im(ones): each one a path into the loss")
    dy = rng.normal(size=y.shape)
    report.tensor("dy", dy)
    dx = check_layer_rows(report, layer, x, dy)
    report.tensor("dx", dx, "= col2im(W_mat.T @ dy_mat): each pixel sums the windows that covered it")
    report.say("  col2im alone: the gradient of <im2col(x), dcols> with respect to x is col2im(dcols)")
    dcols = rng.normal(size=cols.shape)
    x_probe = x.copy()
    report.row(
        "col2im",
        "dx",
        K.col2im(dcols, x.shape, (3, 3), (2, 2), (1, 1)),
        numerical_gradient(lambda: float(np.vdot(K.im2col(x_probe, (3, 3), (2, 2), (1, 1)), dcols)), x_probe),
    )

    report.section("1d. ConvTranspose2d(2, 1, kernel 3, stride 2, padding 1, output_padding 1): 3x3 -> 6x6")
    layer_t = nn.ConvTranspose2d(2, 1, 3, stride=2, padding=1, output_padding=1, rng=rng, dtype=np.float64)
    layer_t.name = "ConvT2d(2, 1)"
    layer_t.params["b"][:] = rng.uniform(-0.1, 0.1, 1)
    xt = rng.normal(size=(1, 2, 3, 3))
    yt = layer_t.forward(xt, training=True)
    report.tensor("x", xt)
    report.tensor("y", yt, "(3 - 1) 2 - 2 + 3 + 1 = 6: the forward is conv2d's input gradient")
    dyt = rng.normal(size=yt.shape)
    check_layer_rows(report, layer_t, xt, dyt)
    probe = rng.normal(size=yt.shape)
    conv_probe, _ = K.conv2d_forward(probe, layer_t.params["W"], None, (2, 2), (1, 1))
    convt_xt = K.conv_transpose2d_forward(xt, layer_t.params["W"], None, (2, 2), (1, 1), (1, 1))
    lhs, rhs = float(np.vdot(conv_probe, xt)), float(np.vdot(probe, convt_xt))
    report.say("  the adjoint identity <conv(u), x> = <u, convT(x)>, same W, for a random u of y's shape:")
    report.row("adjoint", "<,>", np.array([lhs]), np.array([rhs]))


notebook_cell(conv_part)


# %% [markdown]
# ## Part 2: why a correct backward agrees to about 1e-9
#
# A central difference has two errors: truncation, `eps^2 |f'''| / 6`, which shrinks with eps, and
# rounding, about `u |f| / eps` with float64's unit roundoff `u = 1.1e-16`, which grows as eps shrinks.


# %%
def finite_difference_part(report: Report, opts: Options) -> None:
    report.section("2. Finite differences: the error to expect")
    s = 0.5  # the logit; the target is 1
    p = 1 / (1 + np.exp(-s))
    f = float(np.log1p(np.exp(-s)))  # BCE of logit s against target 1: softplus(-s)
    exact = p - 1  # its derivative, p - t
    third = p * (1 - p) * (1 - 2 * p)  # f''' = sigmoid''(s)
    u = np.finfo(np.float64).eps / 2
    report.say(f"  f(s) = bce_with_logits(s, t=1) at s = {s}: f = {f:.6f}, f'(s) = p - t = {exact:.12f}")
    report.say(f"  {'eps':>8} {'central difference':>20} {'|error|':>10}   about eps^2 |f'''|/6 + u |f|/eps")
    for eps in (1e-2, 1e-4, 1e-5, 1e-6, 1e-8, 1e-10):
        z = np.array([[s]])

        def loss(z: Any = z) -> float:
            return float(bce_with_logits(z, 1.0)[0])

        numeric = float(numerical_gradient(loss, z, eps)[0, 0])
        predicted = eps**2 * abs(third) / 6 + u * abs(f) / eps
        report.say(f"  {eps:>8.0e} {numeric:>20.12f} {abs(numeric - exact):>10.1e}   {predicted:.1e}")
    report.say("  Truncation falls with eps, rounding grows: at eps = 1e-6 rounding dominates. A network's loss")
    report.say("  goes through many rounded operations, so expect errors of about 1e-11 to 1e-10 on gradients of")
    report.say("  1e-2 to 1e-1: a relative error around 1e-9, as in every row of this walkthrough. A wrong")
    report.say("  backward is off by a relative O(1e-2) or more; a row fails above 1e-6.")
    z32 = np.array([[s]], dtype=np.float32)
    numeric32 = float(numerical_gradient(lambda: float(bce_with_logits(z32, 1.0)[0]), z32, 1e-6)[0, 0])
    report.say(
        f"  in float32 (u = 6e-8) the same difference gives {numeric32:.4f}, off by "
        f"{abs(numeric32 - exact) / abs(exact):.0%}: gradient checks run in float64"
    )


notebook_cell(finite_difference_part)


# %% [markdown]
# ## Part 3: one GAN training step (sections 4, 9 and 10)
#
# The discriminator step, then the generator step through the frozen discriminator, with every
# tensor compared with finite differences on its way down, and both Adam updates.


# %%
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


def forward_chain(report: Report, chain: list[nn.Layer], x: Any) -> list[Any]:
    """Run ``chain`` in training mode, printing each layer; returns [input, output 0, output 1, ...]."""
    acts = [x]
    for layer in chain:
        acts.append(layer.forward(acts[-1], training=True))
        report.say(
            f"  {short(layer.name):<18} {shape_str(acts[-2]):>6} -> {shape_str(acts[-1]):<6}  "
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
    report.header("backprop (first 2)", "finite differences")
    logits = acts[-1].copy()
    report.row("loss", "dlogits", dlogits, numerical_gradient(lambda: head(logits)[0], logits, FD_EPS))
    for k, tensor, analytic in grads:
        layer = chain[k]
        if tensor == "dx":
            if analytic is None:
                report.note(layer.name, "dx", "not computed:", "input_grad=False")
                continue
            x_k = acts[k].copy()
            report.row(
                layer.name, "dx", analytic, numerical_gradient(lambda k=k, x_k=x_k: loss_from(k, x_k), x_k, FD_EPS)
            )
            continue
        numeric = numerical_gradient(lambda: loss_from(0, acts[0]), layer.params[tensor[1:]], FD_EPS)
        if analytic is None:
            report.note(layer.name, tensor, "not computed:", f"param_grads=False {few(numeric, 1)}")
        else:
            report.row(layer.name, tensor, analytic, numeric)


def discriminator_step(report: Report, G: nn.Sequential, D: nn.Sequential, opt_d: Adam, real: Any, z: Any) -> None:
    n = real.shape[0]
    report.section("3a. Discriminator step (GANStep.discriminator_step)")
    report.say("forward: fake = G(z), then D on [real; fake] with targets [1]*n + [0]*n")
    fake = G.forward(z, training=True)
    report.say(f"  {'G(z)':<18} {shape_str(z):>6} -> {shape_str(fake):<6}  (G gets no gradient in this step)")
    batch = np.concatenate([real, fake])
    targets = np.concatenate([np.ones((n, 1)), np.zeros((n, 1))])
    # D.forward(x, logits=True) stops before the final Sigmoid: the loss applies it, in a stable form.
    chain = D.layers[:-1]
    acts = forward_chain(report, chain, batch)
    report.say(f"  {short(D.layers[-1].name):<19} skipped: logits=True, the sigmoid lives inside bce_with_logits")
    report.say()
    report.say("backward: D.backward(dlogits, input_grad=False); the loss is bce_with_logits(logits, targets)")
    opt_d.zero_grad()
    backward_and_check(report, chain, acts, lambda logits: bce_with_logits(logits, targets), frozen=set())
    explain_fused_sigmoid(report, D.layers[-1], acts[-1], targets)
    adam_step(report, opt_d, D, "D")


def explain_fused_sigmoid(report: Report, sigmoid: nn.Layer, logits: Any, targets: Any) -> None:
    numel = logits.size  # one logit per sample: numel = 2n, the n real and the n generated samples
    report.say()
    report.say("why the loss takes logits: the unfused path Sigmoid.backward(dL/dp) gives the same dlogits,")
    report.say(f"(p - t) / numel, numel = {numel} logits (n real + n fake samples, one logit each)")
    p = sigmoid.forward(logits, training=True)
    dp = (-targets / p + (1 - targets) / (1 - p)) / numel
    _, fused = bce_with_logits(logits, targets)
    report.header("Sigmoid.backward(dp)", "fused (p - t) / numel")
    report.row(sigmoid.name, "ds", sigmoid.backward(dp), fused)
    far = np.array([[40.0]])
    with np.errstate(divide="ignore"):
        naive = float(-np.log(1 - sigmoid.forward(far)).item())
    stable = bce_with_logits(far, 0.0)[0]
    report.say(f"  and at s = 40, t = 0: -log(1 - sigmoid(s)) = {naive} (sigmoid rounded to 1),")
    report.say(f"  max(s,0) - s t + log1p(exp(-|s|)) = {stable}")


def generator_step(report: Report, G: nn.Sequential, D: nn.Sequential, opt_g: Adam, z: Any, kind: str) -> None:
    report.section("3b. Generator step through the frozen D (GANStep.generator_step)")
    report.say(f"forward: fresh z -> G -> D (logits), loss generator_loss(logits, kind={kind!r})")
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
    report.say("  (G[0] db is 0 by construction: BatchNorm subtracts each feature's batch mean, and with it any")
    report.say("   bias added just before it; the zero comes out of backprop as rounding noise, ~1e-18)")
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
    report.say("  bias correction makes the first step exactly -lr g / (|g| + eps): a weight moves by about lr")
    report.say("  only when |g| >> eps (lr / 2 at |g| = eps), whatever the size of its gradient otherwise.")
    report.say(
        f"  Without the correction m / sqrt(v) would be (1 - beta1) / sqrt(1 - beta2) = "
        f"{(1 - beta1) / np.sqrt(1 - beta2):.1f} times g / |g|."
    )
    before = {(name, key): p.copy() for name, layer in net.named_layers() for key, p in layer.params.items()}
    opt.step()
    report.header("change / lr", "-g / (|g| + eps)")
    for name, layer in net.named_layers():
        for key, p in layer.params.items():
            g = layer.grads[key]
            # Step 1: m = (1 - beta1) g and v = (1 - beta2) g^2, which the corrections divide back out.
            report.row(layer.name, key, (p - before[(name, key)]) / opt.lr, -g / (np.abs(g) + opt.eps))


def gan_step_part(report: Report, opts: Options) -> None:
    n = opts.batch_size
    G, D = build(opts.seed)
    rng = np.random.default_rng([opts.seed, 1])
    real = rng.normal([0.5, -0.5, 0.25], 0.1, size=(n, 3))  # the "data set": a blob in R^3, inside tanh's range
    report.say()
    report.say(f"  G = {G!r}")
    report.say(f"  D = {D!r}")
    opt_d = Adam(D, lr=LR, betas=BETAS, eps=ADAM_EPS)
    opt_g = Adam(G, lr=LR, betas=BETAS, eps=ADAM_EPS)
    with buffers_kept(G, D):
        discriminator_step(report, G, D, opt_d, real, rng.standard_normal((n, 2)))
        generator_step(report, G, D, opt_g, rng.standard_normal((n, 2)), opts.g_loss)


notebook_cell(gan_step_part)


# %% [markdown]
# ## Part 4: minimax vs non-saturating against a dominant D (section 11)
#
# D's output bias at -12: D rejects every fake. Per sample both losses send G the same direction, scaled
# by D(G(z)) (minimax) or 1 - D(G(z)) (non-saturating); Adam then divides most of that scale away.
# tools/adam_saturation.py follows the same networks for 200 Adam steps.


# %%
def minimax_part(report: Report, opts: Options) -> None:
    report.section("4. Minimax vs non-saturating, same weights and noise, D's output bias at -12")
    z = np.random.default_rng([opts.seed, 2]).standard_normal((opts.batch_size, 2))
    dfake, norms, moved = {}, {}, {}
    d_fake = np.zeros(0)
    for kind in ("minimax", "nonsaturating"):
        G, D = build(opts.seed)
        D.layers[2].params["b"][:] = -12.0
        with buffers_kept(G):
            fake = G.forward(z, training=True)
            logits = D.forward(fake, training=True, logits=True)
            _, dlogits = generator_loss(logits, kind=kind)
            d_fake = 1 / (1 + np.exp(-logits.ravel()))
            dfake[kind] = D.backward(dlogits, param_grads=False)
            G.zero_grad()
            G.backward(dfake[kind], input_grad=False)
            norms[kind] = float(
                np.sqrt(sum((g**2).sum() for _, layer in G.named_layers() for g in layer.grads.values()))
            )
            before = np.concatenate([p.ravel() for _, layer in G.named_layers() for p in layer.params.values()])
            Adam(G, lr=LR, betas=BETAS, eps=ADAM_EPS).step()
            after = np.concatenate([p.ravel() for _, layer in G.named_layers() for p in layer.params.values()])
            moved[kind] = float(np.mean(np.abs(after - before)) / LR)
    report.tensor("D(G(z))", d_fake, "per sample: D rejects every fake")
    report.tensor("dfake, minimax", dfake["minimax"], "scaled by D(G(z_i)) / n per sample")
    report.tensor("dfake, non-saturating", dfake["nonsaturating"], "scaled by (1 - D(G(z_i))) / n per sample")
    report.header("minimax / D(G(z))", "non-sat / (1-D(G(z)))")
    report.row(
        "dfake per sample",
        "dir",
        dfake["minimax"] / d_fake[:, None],
        dfake["nonsaturating"] / (1 - d_fake[:, None]),
    )
    report.say(
        f"  |dW| of G: minimax {norms['minimax']:.2e}, non-saturating {norms['nonsaturating']:.2e} "
        f"({norms['nonsaturating'] / norms['minimax']:,.0f}x)"
    )
    report.say(
        f"  one Adam step, mean |change| / lr: minimax {moved['minimax']:.3f}, non-saturating "
        f"{moved['nonsaturating']:.3f}"
    )
    report.say("  Adam's step is about lr for both while |g| >> eps; what differs is the per-sample weighting")
    report.say("  and a sudden drop in scale (python tools/adam_saturation.py: 200 steps, docs/backprop.md 11)")


notebook_cell(minimax_part)


# %% [markdown]
# ## Breaking kernels, and exercises
#
# `--break NAME` and `--exercise NAME` put other functions in the place of tinygan's kernels. Layers look
# their kernels up on the namespace at every call, so replacing a name there reaches every layer.


# %%
# name -> (the kernels the learner writes, the guide's section)
EXERCISES: dict[str, tuple[tuple[str, ...], int]] = {
    "activations": (("relu_backward", "leaky_relu_backward", "sigmoid_backward", "tanh_backward"), 3),
    "dense": (("dense_backward_data", "dense_backward_weight"), 2),
    "bce": (("bce_with_logits",), 4),
    "dropout": (("dropout_backward",), 5),
    "batchnorm": (("batchnorm_backward",), 6),
    "col2im": (("col2im",), 7),
    "conv": (("conv2d_backward_data", "conv2d_backward_weight"), 7),
    "adam": (("adam_update",), 9),
}


class ExerciseError(Exception):
    """A learner's file that does not load, lacks a function, or raises: reported in one line."""


def load_module(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def broken_kernels() -> ModuleType:
    return load_module(HERE / "broken_kernels.py", "broken_kernels")


class Swap(NamedTuple):
    """Kernels put in the place of tinygan's for one run: a --break mode or a learner's exercise."""

    kind: str  # "break" or "exercise"
    lead: str  # printed under the title: what was swapped in, and from where
    kernels: dict[str, Callable[..., Any]]  # kernel name -> the function that replaces it
    calls: dict[str, int]  # kernel name -> how often the walkthrough called it (exercises only)


def exercise_kernels(name: str, path: Path) -> Swap:
    """The learner's functions from ``path``, each wrapped so that an exception names the exercise."""
    functions, section = EXERCISES[name]
    where = f"--exercise {name}: {path}"
    if not path.is_file():
        raise ExerciseError(
            f"{where} does not exist (the stubs are in exercises/, the solutions in exercises/solutions/)"
        )
    try:
        module = load_module(path, f"exercise_{name}")
    except Exception as exc:  # a learner's file may fail in any way; report it in one line
        raise ExerciseError(f"{where} does not load: {type(exc).__name__}: {exc}") from None
    missing = [f for f in functions if not callable(getattr(module, f, None))]
    if missing:
        raise ExerciseError(f"{where} defines no {', '.join(missing)} (expected: {', '.join(functions)})")

    calls = dict.fromkeys(functions, 0)  # how often the walkthrough used each: shown in the summary

    def guarded(fn_name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            calls[fn_name] += 1
            try:
                return fn(*args, **kwargs)
            except NotImplementedError as exc:
                raise ExerciseError(
                    f"{where}: {fn_name} is not written yet ({exc or 'NotImplementedError'}); "
                    f"docs/backprop.md, section {section}"
                ) from None
            except Exception as exc:
                raise ExerciseError(f"{where}: {fn_name} raised {type(exc).__name__}: {exc}") from None

        return call

    kernels = {f: guarded(f, getattr(module, f)) for f in functions}
    return Swap("exercise", f"--exercise {name}: {', '.join(kernels)} from {path}", kernels, calls)


@contextlib.contextmanager
def kernels_replaced(replacements: dict[str, Callable[..., Any]]) -> Iterator[None]:
    """Put ``replacements`` in the active CPU kernel namespace for the duration, then restore it."""
    namespace = backend.kernels("cpu")
    saved = {name: getattr(namespace, name) for name in replacements}
    for name, fn in replacements.items():
        setattr(namespace, name, fn)
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(namespace, name, fn)


# %% [markdown]
# ## Running it all


# %%
PARTS = (dropout_part, batchnorm_part, conv_part, finite_difference_part, gan_step_part, minimax_part)


def parse_exercise(text: str) -> tuple[str, Path]:
    name, _, path = text.partition("=")
    if name not in EXERCISES:
        raise argparse.ArgumentTypeError(f"unknown exercise {name!r}: expected one of {', '.join(EXERCISES)}")
    return name, Path(path) if path else ROOT / "exercises" / f"{name}.py"


MAX_BATCH = 1000


def main(argv: list[str] | None = None) -> int:
    parser = cli.ArgumentParser(  # bad options: one line and tinygan.cli's exit code 1 (argparse's 2 means no GPU)
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--seed", type=cli.non_negative_int, default=0, help="seeds the weights, the data and the noise (default 0)"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=4,
        help=f"real (and generated) samples per GAN step, 3 to {MAX_BATCH} (default 4)",
    )
    parser.add_argument(
        "--g-loss",
        choices=("nonsaturating", "minimax"),
        default="nonsaturating",
        help="the generator's loss in the GAN step (default nonsaturating)",
    )
    parser.add_argument(
        "--kernels",
        choices=backend.CPU_IMPLEMENTATIONS,
        default="reference",
        help="CPU kernels: the readable NumPy 'reference' ones (default) or the jitted 'numba' ones",
    )
    breaks = broken_kernels().BREAKS
    parser.add_argument(
        "--break",
        dest="break_",
        metavar="NAME",
        choices=sorted(breaks),
        help=f"swap in a deliberately broken kernel from examples/broken_kernels.py: {', '.join(sorted(breaks))}",
    )
    parser.add_argument(
        "--exercise",
        metavar="NAME[=PATH]",
        type=parse_exercise,
        help=f"check your own kernels from exercises/NAME.py (or PATH): {', '.join(EXERCISES)}",
    )
    args = parser.parse_args(argv)
    if args.batch_size < 3:
        # Two values per feature normalize to -1 and +1 whatever they are: BatchNorm's output then barely
        # depends on its input (only through eps), and its ~1e-7 input gradient drowns in finite-difference noise.
        parser.error("--batch-size must be at least 3: BatchNorm maps any 2 values per feature to about -1 and +1")
    if args.batch_size > MAX_BATCH:  # every input is perturbed one at a time: 1,000 take ~10 s, 10**8 never end
        parser.error(f"--batch-size must be at most {MAX_BATCH} (finite differences perturb every input), "
                     f"received {args.batch_size}")  # fmt: skip
    if args.break_ and args.exercise:
        parser.error("--break and --exercise replace kernels both: use one at a time")

    opts = Options(args.seed, args.batch_size, args.g_loss)
    with kernels_chosen(args.kernels):
        if args.break_:
            broken = breaks[args.break_]
            lead = (
                f"--break {args.break_}: {', '.join(broken.kernels)} from examples/broken_kernels.py\n"
                f"  the mistake: {broken.mistake}"
            )
            return walkthrough(opts, args.kernels, Swap("break", lead, broken.kernels, {}))
        if args.exercise:
            try:
                return walkthrough(opts, args.kernels, exercise_kernels(*args.exercise))
            except ExerciseError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 1
        return walkthrough(opts, args.kernels, None)


def walkthrough(opts: Options, kernels: str, swap: Swap | None) -> int:
    start = time.perf_counter()
    report = Report()
    report.say(
        f"tinygan backprop walkthrough: seed {opts.seed}, batch {opts.batch_size}, float64, kernels {kernels}, "
        f"g_loss {opts.g_loss}"
    )
    if swap:
        report.say(swap.lead)
    report.say(f"every gradient beside what it should equal; a row fails above rel err {TOLERANCE:g}")
    with kernels_replaced(swap.kernels if swap else {}):
        for part in PARTS:
            part(report, opts)

    report.section("Summary")
    failures = report.failures
    worst = max(err for _, err in report.results)
    seconds = time.perf_counter() - start
    if failures:
        report.say(f"FAILED: {len(failures)} of {len(report.results)} checks off by more than {TOLERANCE:g}:")
        for name, err in failures:
            report.say(f"  {name}: rel err {err:.1e}")
        if swap:
            report.say(f"first caught by: {failures[0][0]}")
        report.say(f"({seconds:.2f} s)")
        return 1
    report.say(f"all {len(report.results)} checks passed (largest rel err {worst:.1e}) in {seconds:.2f} s")
    if swap and swap.kind == "break":
        report.say("the broken kernel was NOT caught: no check uses it, or the checks are too weak")
    elif swap:
        used = ", ".join(f"{name} {count}" for name, count in swap.calls.items())
        report.say(f"your kernels passed every check that uses them (calls: {used})")
    return 0


if __name__ == "__main__" and "ipykernel" not in sys.modules:
    sys.exit(main())
