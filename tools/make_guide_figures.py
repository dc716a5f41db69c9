"""Draw the figures of docs/backprop.md from the library's own code.

    python tools/make_guide_figures.py                  # writes docs/figures/*.png
    python tools/make_guide_figures.py --out /tmp/figs

gan_step_graph.png: the computational graph of one GAN training step (GANStep.discriminator_step, then
generator_step), forward in black, backward in red, with the places where ``input_grad=False`` and
``param_grads=False`` cut the backward pass. A diagram, drawn with matplotlib only.

mode_collapse_coverage.png: how many digit classes the dense MNIST GAN's samples cover, epoch by epoch, for
the original recipe (all 180 epochs) against the default recipe and a collapsed run, from the scores
recorded in bench/results/gpu-training-runs-2026-11-25.md (read from that file, not copied here).

g_loss_gradients.png: the generator's loss and |d loss / d logit| against D(G(z)), for the minimax and the
non-saturating loss. The curves are tinygan.losses.generator_loss evaluated on one logit at a time, not the
closed forms the guide derives, so a change to the loss shows up in the figure.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: never try to open a window

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from tinygan import backend  # noqa: E402
from tinygan.losses import generator_loss  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KINDS = {
    "nonsaturating": ("non-saturating: minimize -log D(G(z))", "tab:blue"),
    "minimax": ("minimax: minimize log(1 - D(G(z)))", "tab:red"),
}


def generator_curves(logits: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-sample loss and d loss / d logit for each kind.

    One logit per call: generator_loss averages over its batch, so a batch of one gives the per-sample
    value with no 1/n to undo.
    """
    curves = {}
    for kind in KINDS:
        losses, grads = [], []
        for z in logits:
            loss, dlogits = generator_loss(np.array([[z]]), kind=kind)
            losses.append(loss)
            grads.append(float(dlogits[0, 0]))
        curves[kind] = (np.array(losses), np.array(grads))
    return curves


def sigmoid(z: np.ndarray) -> np.ndarray:
    return backend.kernels("cpu").sigmoid_forward(z)


def draw_g_loss_gradients(path: Path) -> None:
    logits = np.linspace(-14.0, 7.0, 421)  # D(G(z)) from ~1e-6 (D wins outright) to ~0.999 (G fools D)
    d_fake = sigmoid(logits)
    curves = generator_curves(logits)

    fig, (ax_loss, ax_grad) = plt.subplots(1, 2, figsize=(11, 4.2))
    for kind, (loss, grad) in curves.items():
        text, color = KINDS[kind]
        ax_loss.plot(d_fake, loss, color=color, label=text)
        ax_grad.plot(d_fake, np.abs(grad), color=color, label=text)

    for ax in (ax_loss, ax_grad):
        ax.set_xscale("log")
        ax.set_xlabel("D(G(z)) = sigmoid(logit)")
        # Early in training, and whenever D dominates, the fakes sit on the left.
        ax.axvspan(d_fake[0], 1e-2, color="0.92", zorder=0)
        ax.grid(True, which="major", alpha=0.3)
    ax_loss.text(2e-6, 2.0, "D wins:\nfakes rejected", fontsize=8, color="0.35")
    ax_loss.annotate(
        "flat against log D(G(z)), which is\n~ the logit down here: no gradient",
        xy=(1e-4, 0.0),
        xytext=(1e-4, -4.0),
        fontsize=8,
        color="tab:red",
        arrowprops={"arrowstyle": "->", "color": "tab:red"},
    )
    ax_loss.set_ylabel("generator loss (per sample)")
    ax_loss.set_title("the two generator losses")
    ax_loss.legend(fontsize=8, loc="upper right")

    ax_grad.set_yscale("log")
    ax_grad.set_ylabel("|d loss / d logit|  (per sample)")
    ax_grad.set_title("the gradient G receives through D")
    at = np.array([np.log(1e-3 / (1 - 1e-3))])  # the logit where D(G(z)) = 0.001
    ns, mm = (abs(curves[1][0]) for curves in generator_curves(at).values())
    ax_grad.annotate(
        f"at D(G(z)) = 0.001:\nnon-saturating {ns:.3f}\nminimax {mm:.3f} ({ns / mm:.0f}x smaller)",
        xy=(1e-3, mm),
        xytext=(3e-5, 3e-5),
        fontsize=8,
        arrowprops={"arrowstyle": "->", "color": "0.4"},
    )
    ax_grad.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    # No "Software" stamp: regenerating with another matplotlib then changes the file only if the image changes.
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


# -- the computational graph of one GAN step ----------------------------------------------------------------

FORWARD, BACKWARD, CUT = "black", "tab:red", "tab:red"


def _node(ax: plt.Axes, x: float, y: float, text: str, kind: str = "op", width: float = 1.3) -> None:
    """A box for a network or a loss, an ellipse-ish rounded box for data and parameters."""
    style = {
        "op": {"boxstyle": "round,pad=0.35", "fc": "#dbe9f6", "ec": "tab:blue"},
        "data": {"boxstyle": "round,pad=0.25", "fc": "white", "ec": "0.4"},
        "param": {"boxstyle": "round4,pad=0.25", "fc": "#fdf1d6", "ec": "tab:orange"},
        "loss": {"boxstyle": "round,pad=0.35", "fc": "#f3dede", "ec": "tab:red"},
    }[kind]
    ax.text(x, y, text, ha="center", va="center", fontsize=8.5, bbox=style, zorder=3)


def _arrow(ax: plt.Axes, a: tuple[float, float], b: tuple[float, float], color: str, dashed: bool = False) -> None:
    ax.annotate(
        "",
        xy=b,
        xytext=a,
        arrowprops={"arrowstyle": "->", "color": color, "lw": 1.4, "linestyle": "--" if dashed else "-"},
        zorder=2,
    )


def _cut(ax: plt.Axes, x: float, y: float, text: str, dy: float = -0.42) -> None:
    """A red cross where the backward pass stops, with the switch that stops it."""
    ax.plot([x], [y], marker="X", color=CUT, markersize=11, zorder=4)
    ax.text(x, y + dy, text, ha="center", va="top" if dy < 0 else "bottom", fontsize=7.5, color=CUT)


def draw_gan_step_graph(path: Path) -> None:
    fig, (ax_d, ax_g) = plt.subplots(2, 1, figsize=(11, 6.2))
    for ax in (ax_d, ax_g):
        ax.set_xlim(-0.3, 12.3)
        ax.set_ylim(-1.5, 1.75)
        ax.axis("off")
    y, up = 0.0, 1.35  # the forward row, the parameter row
    down = -0.28  # backward arrows run just below the forward ones

    # 1. The discriminator step: D's weights get gradients, nothing flows into G.
    ax = ax_d
    ax.set_title("1. discriminator step: D.backward(dlogits, input_grad=False)", fontsize=10, loc="left")
    _node(ax, 0.3, y, "noise z", "data")
    _node(ax, 1.9, y, "G", "op")
    _node(ax, 3.5, y, "fake", "data")
    _node(ax, 3.5, 1.0, "real x", "data")
    _node(ax, 5.2, y, "[real; fake]", "data")
    _node(ax, 7.0, y, "D (logits)", "op")
    _node(ax, 8.7, y, "s", "data")
    _node(ax, 10.5, y, "BCE(s, targets)\n= L_D", "loss")
    _node(ax, 1.9, up, "G's weights", "param")
    _node(ax, 7.0, up, "D's weights", "param")
    for a, b in [((0.75, y), (1.55, y)), ((2.25, y), (3.15, y)), ((3.85, y), (4.5, y)), ((9.0, y), (9.55, y))]:
        _arrow(ax, a, b, FORWARD)
    _arrow(ax, (3.95, 1.0), (4.8, 0.22), FORWARD)
    _arrow(ax, (5.9, y), (6.35, y), FORWARD)
    _arrow(ax, (7.65, y), (8.45, y), FORWARD)
    _arrow(ax, (1.75, up - 0.25), (1.75, y + 0.3), FORWARD)
    _arrow(ax, (6.85, up - 0.25), (6.85, y + 0.3), FORWARD)
    # Backward: from the loss down to D, into D's weights, and no further.
    _arrow(ax, (9.55, y + down), (9.0, y + down), BACKWARD)
    _arrow(ax, (8.45, y + down), (7.65, y + down), BACKWARD)
    _arrow(ax, (7.15, y + 0.3), (7.15, up - 0.25), BACKWARD)
    ax.text(7.3, 0.68, "dW of D\n(+= for real and\nfake rows: a fork)", fontsize=7.5, color=BACKWARD, va="center")
    _arrow(ax, (6.35, y + down), (5.9, y + down), BACKWARD, dashed=True)
    _cut(ax, 6.12, y + down, "input_grad=False:\nno dL/d(input of D),\nG gets nothing")
    ax.text(1.9, -0.75, "G only makes the fakes here:\nno backward through G", ha="center", fontsize=7.5, color="0.4")
    ax.text(
        12.2,
        1.6,
        "forward: black\nbackward: red\nX: the backward stops",
        ha="right",
        va="top",
        fontsize=8,
        color="0.25",
    )

    # 2. The generator step: through D's layers, but not into D's weights.
    ax = ax_g
    ax.set_title(
        "2. generator step: dfake = D.backward(dlogits, param_grads=False); G.backward(dfake, input_grad=False)",
        fontsize=10,
        loc="left",
    )
    _node(ax, 0.3, y, "fresh noise z", "data")
    _node(ax, 2.3, y, "G", "op")
    _node(ax, 4.3, y, "fake", "data")
    _node(ax, 6.5, y, "D (logits)", "op")
    _node(ax, 8.5, y, "s", "data")
    _node(ax, 10.5, y, "generator_loss(s)\n= L_G", "loss")
    _node(ax, 2.3, up, "G's weights", "param")
    _node(ax, 6.5, up, "D's weights", "param")
    for a, b in [((0.95, y), (1.95, y)), ((2.65, y), (3.95, y)), ((4.65, y), (5.85, y)), ((7.15, y), (8.25, y))]:
        _arrow(ax, a, b, FORWARD)
    _arrow(ax, (8.75, y), (9.35, y), FORWARD)
    _arrow(ax, (2.15, up - 0.25), (2.15, y + 0.3), FORWARD)
    _arrow(ax, (6.35, up - 0.25), (6.35, y + 0.3), FORWARD)
    _arrow(ax, (9.35, y + down), (8.75, y + down), BACKWARD)
    _arrow(ax, (8.25, y + down), (7.15, y + down), BACKWARD)
    _arrow(ax, (5.85, y + down), (4.65, y + down), BACKWARD)
    ax.text(5.25, y + down - 0.12, "dfake", ha="center", va="top", fontsize=7.5, color=BACKWARD)
    _arrow(ax, (3.95, y + down), (2.65, y + down), BACKWARD)
    _arrow(ax, (2.45, y + 0.3), (2.45, up - 0.25), BACKWARD)
    ax.text(2.6, 0.68, "dW of G", fontsize=7.5, color=BACKWARD, va="center")
    _arrow(ax, (6.65, y + 0.3), (6.65, up - 0.25), BACKWARD, dashed=True)
    _cut(ax, 6.65, 0.72, "param_grads=False: D's dW not computed,\nD's .grads keep the D step's", dy=0.3)
    ax.texts[-1].set_position((7.0, 0.55))
    ax.texts[-1].set_horizontalalignment("left")
    _arrow(ax, (1.95, y + down), (0.95, y + down), BACKWARD, dashed=True)
    _cut(ax, 1.45, y + down, "input_grad=False:\nno dL/dz (nothing\nbelow G is trained)")
    ax.text(
        6.5,
        -1.35,
        "D's layers still turn dy into dx with their current weights and this forward's caches",
        ha="center",
        fontsize=7.5,
        color="0.4",
    )

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


# -- mode collapse in the project's own runs ------------------------------------------------------------------

RUNS_RECORD = ROOT / "bench" / "results" / "gpu-training-runs-2026-11-25.md"


def recorded_coverage(record: Path = RUNS_RECORD) -> dict[str, list[tuple[int, int, float, float | None]]]:
    """(epoch, classes covered, rarest class's share in %, share of ones in % or None) per run, from the record.

    "original": the table of "The original recipe for all 180 epochs"; "default": the leaky_tanh_noise row
    (the default recipe) at epoch 30; "collapsed": the "smooth" run (ReLU, real labels 0.9) at epoch 30.
    """
    text = record.read_text()
    section = text.split("## The original recipe for all 180 epochs", 1)[1]
    original = [
        (int(e), int(c), float(r), float(o))
        for e, c, r, o in re.findall(
            r"^\| (\d+) \| [\d.]+ \| [\d.]+ \| (\d+)/10 \(([\d.]+)%\) \| ([\d.]+)% \|$", section, re.M
        )
    ]
    default = re.search(r"^\| \*\*leaky_tanh_noise\*\*.*\*\*(\d+)/10 \(([\d.]+)%\)\*\* at (\d+) \|$", text, re.M)
    collapsed = re.search(
        r"^\| smooth \| ReLU, real labels 0.9 \| (\d+) \| [\d.]+ \| [\d.]+ \| (\d+) \(collapsed\) \|$", text, re.M
    )
    if len(original) < 5 or default is None or collapsed is None:
        raise ValueError(f"{record}: the tables this figure reads were not found (was the record reformatted?)")
    return {
        "original": original,
        "default": [(int(default.group(3)), int(default.group(1)), float(default.group(2)), None)],
        "collapsed": [(int(collapsed.group(1)), int(collapsed.group(2)), 0.0, None)],
    }


def draw_mode_collapse_coverage(path: Path) -> None:
    runs = recorded_coverage()
    fig, (ax_cov, ax_share) = plt.subplots(1, 2, figsize=(11, 3.8))
    epochs = [r[0] for r in runs["original"]]
    ax_cov.plot(epochs, [r[1] for r in runs["original"]], "o-", color="tab:red", label="--recipe original")
    for name, color, marker, text in (
        ("default", "tab:blue", "s", "default recipe"),
        ("collapsed", "0.3", "X", "ReLU + real labels 0.9 (collapsed)"),
    ):
        ax_cov.plot([r[0] for r in runs[name]], [r[1] for r in runs[name]], marker, color=color, ms=9, label=text)
    ax_cov.set_ylim(0, 10.5)
    ax_cov.set_xlabel("epoch")
    ax_cov.set_ylabel("classes with >= 5% of the samples")
    ax_cov.set_title("class coverage of 10,000 samples")
    ax_cov.legend(fontsize=8, loc="lower right")
    ax_share.plot(epochs, [r[3] for r in runs["original"]], "o-", color="tab:red", label="ones (--recipe original)")
    ax_share.plot(epochs, [r[2] for r in runs["original"]], "o--", color="tab:orange", label="rarest class (original)")
    d = runs["default"][0]
    ax_share.plot([d[0]], [d[2]], "s", color="tab:blue", ms=9, label="rarest class (default recipe)")
    ax_share.axhline(10, color="0.6", lw=0.8, ls=":")
    ax_share.text(182, 10.8, "uniform: 10%", fontsize=8, color="0.4", ha="right")
    ax_share.set_xlabel("epoch")
    ax_share.set_ylabel("share of the samples (%)")
    ax_share.set_title("the commonest and the rarest digit")
    ax_share.legend(fontsize=8, loc="upper right")
    for ax in (ax_cov, ax_share):
        ax.grid(True, alpha=0.3)
        ax.set_xlim(0, 185)
    fig.text(0.01, 0.01, f"data: {RUNS_RECORD.relative_to(ROOT)}", fontsize=7, color="0.45")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "figures", help="folder for the PNGs")
    args = parser.parse_args(argv)
    previous = backend.get_cpu_kernels()
    # The reference kernels are the ones the guide shows, and they need no JIT warm-up.
    backend.set_cpu_kernels("reference")
    try:
        names = ("gan_step_graph.png", "g_loss_gradients.png", "mode_collapse_coverage.png")
        paths = [args.out / name for name in names]
        draw_gan_step_graph(paths[0])
        draw_g_loss_gradients(paths[1])
        draw_mode_collapse_coverage(paths[2])
    finally:
        backend.set_cpu_kernels(previous)
    for path in paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
