"""Draw the figures of docs/backprop.md from the library's own code.

    python tools/make_guide_figures.py                  # writes docs/figures/g_loss_gradients.png
    python tools/make_guide_figures.py --out /tmp/figs

g_loss_gradients.png: the generator's loss and |d loss / d logit| against D(G(z)), for the minimax and the
non-saturating loss. The curves are tinygan.losses.generator_loss evaluated on one logit at a time, not the
closed forms the guide derives, so a change to the loss shows up in the figure.
"""

from __future__ import annotations

import argparse
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "figures", help="folder for the PNGs")
    args = parser.parse_args(argv)
    previous = backend.get_cpu_kernels()
    # The reference kernels are the ones the guide shows, and they need no JIT warm-up.
    backend.set_cpu_kernels("reference")
    try:
        path = args.out / "g_loss_gradients.png"
        draw_g_loss_gradients(path)
    finally:
        backend.set_cpu_kernels(previous)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
