"""Pictures of a run: sample grids, the animated grid over training, loss, gradient-norm and diagnostics plots."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # runs are headless: never try to open a window
    import matplotlib.pyplot as plt

    return plt


def _finish(fig: Any, path: str | os.PathLike, **margins: float) -> None:
    """Save and close ``fig`` with fixed margins: ``tight_layout`` draws the whole figure once more to
    measure it, about half the cost of a plot, and these plots keep one layout for a whole run."""
    fig.subplots_adjust(**margins)
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)


def to_images(x: np.ndarray, image_shape: tuple[int, int, int], value_range: str) -> np.ndarray:
    """Generator output (n, C*H*W) or (n, C, H, W) -> float32 images in [0, 1], (n, H, W) or (n, H, W, 3)."""
    c, h, w = image_shape
    x = np.asarray(x, dtype=np.float32).reshape(-1, c, h, w)
    if value_range == "tanh":
        x = (x + 1.0) / 2.0
    x = np.clip(x, 0.0, 1.0)
    return x[:, 0] if c == 1 else x.transpose(0, 2, 3, 1)


def grid(images: np.ndarray, nrow: int = 8, pad: int = 2) -> np.ndarray:
    """Tile (n, H, W[, 3]) images into one picture with white padding, ``nrow`` images to a row
    (torchvision's name for it)."""
    n, h, w = images.shape[:3]
    rows = int(np.ceil(n / nrow))
    shape = (rows * (h + pad) + pad, nrow * (w + pad) + pad) + images.shape[3:]
    out = np.ones(shape, dtype=np.float32)
    for i, image in enumerate(images):
        r, c = divmod(i, nrow)
        out[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = image
    return out


def save_grid(
    images: np.ndarray, path: str | os.PathLike, nrow: int = 8, gif_frames: dict[str, Any] | None = None
) -> Path:
    """Save (n, H, W[, 3]) images in [0, 1] as one PNG grid. ``gif_frames``: also keep the picture as
    :func:`save_gif` will want it, under ``str(path)``, so the GIF at a run's end need not read the PNGs back."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture = (grid(images, nrow) * 255).round().astype(np.uint8)
    image = Image.fromarray(picture)
    scale = max(1, 256 // picture.shape[0])
    if scale > 1:
        image = image.resize((picture.shape[1] * scale, picture.shape[0] * scale), Image.NEAREST)
    image.save(path)
    if gif_frames is not None:
        gif_frames[str(path)] = gif_frame(image)
    return path


def gif_frame(image: Any) -> Any:
    """A frame as :func:`save_gif` puts it in the GIF: grey as it is (a GIF's 256 grey levels hold it
    exactly), colour reduced to 256 colours with Pillow's fast octree quantizer (~2 ms a frame, where the
    median cut that ``Image.save`` applies to RGB frames by default takes ~100x longer)."""
    from PIL import Image

    if image.mode in ("L", "P"):
        return image
    return image.convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE)


def save_gif(
    frames: Sequence[str | os.PathLike],
    path: str | os.PathLike,
    ms_per_frame: int = 300,
    ready: dict[str, Any] | None = None,
) -> Path | None:
    """Animate PNG frames (sample grids over training) into a looping GIF, each frame as :func:`gif_frame`
    makes it. ``ready``: frames already made, by ``str(path)`` (:func:`save_grid`'s ``gif_frames``); the
    others are read from their files. Either way the GIF is the same, byte for byte."""
    from PIL import Image

    ready = ready or {}
    frames = [Path(f) for f in frames if Path(f).is_file()]
    if not frames:
        return None
    images = []
    for frame in frames:
        image = ready.get(str(frame))
        if image is None:
            with Image.open(frame) as opened:
                opened.load()
                image = gif_frame(opened)
        images.append(image)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=ms_per_frame, loop=0)
    os.replace(tmp, path)  # a viewer never sees half a GIF
    return path


def plot_losses(history: list[dict[str, float]], path: str | os.PathLike) -> Path:
    """D and G loss per epoch, and D's mean output on real and generated images."""
    plt = _pyplot()
    epochs = [row["epoch"] for row in history]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    ax1.plot(epochs, [r["d_loss"] for r in history], label="D loss")
    ax1.plot(epochs, [r["g_loss"] for r in history], label="G loss")
    ax1.set_ylabel("binary cross-entropy")
    ax1.legend(loc="upper right")
    ax2.plot(epochs, [r["d_real"] for r in history], label="D(x), real")
    ax2.plot(epochs, [r["d_fake"] for r in history], label="D(G(z)), generated")
    ax2.set_ylim(0, 1)
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("mean D output")
    ax2.legend(loc="upper right")
    _finish(fig, path, left=0.1, bottom=0.08, top=0.97, hspace=0.08)
    return Path(path)


def plot_grad_norms(history: list[dict[str, float]], path: str | os.PathLike) -> Path | None:
    """Per-layer weight-gradient norms of G and D per epoch (log scale). Under Adam a small gradient does
    not mean a small step: read it beside :func:`plot_diagnostics` (docs/backprop.md)."""
    keys = sorted({k for row in history for k in row if k.startswith("grad.")})
    if not keys:
        return None
    plt = _pyplot()
    epochs = [row["epoch"] for row in history]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, net in zip(axes, ("G", "D")):
        for key in (k for k in keys if k.startswith(f"grad.{net}.")):
            ax.plot(epochs, [max(r.get(key, np.nan), 1e-12) for r in history], label=key[len("grad.") :])
        ax.set_yscale("log")
        ax.set_title(f"{net}: last step's weight-gradient norm per layer")
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7, loc="lower left")
    _finish(fig, path, left=0.06, bottom=0.12, top=0.92, wspace=0.05)
    return Path(path)


def plot_diagnostics(history: list[dict[str, float]], path: str | os.PathLike) -> Path | None:
    """What Adam did and what G receives, per epoch (tinygan.diagnostics): each layer's relative update
    ||delta theta|| / ||theta|| (log scale), the RMS gradient G receives from D per sample (the mean over
    the epoch's steps, ``g_input_grad``, and the probe's, ``g_input_grad_probe``), and the share
    of dead (ReLU) or all-negative (LeakyReLU) units in each network."""
    updates = sorted({k for row in history for k in row if k.startswith("update.")})
    received = [k for k in ("g_input_grad", "g_input_grad_probe") if any(k in row for row in history)]
    if not updates and not received:
        return None
    plt = _pyplot()
    epochs = [row["epoch"] for row in history]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for key in updates:
        axes[0].plot(epochs, [max(r.get(key, np.nan), 1e-12) for r in history], label=key[len("update.") :])
    axes[0].set_yscale("log")
    axes[0].set_title("relative update per epoch, ||Δθ|| / ||θ||")
    if updates:  # none for a run resumed midway through its only epoch
        axes[0].legend(fontsize=7, ncol=2, loc="lower left")
    labels = {"g_input_grad": "mean over the epoch's steps", "g_input_grad_probe": "probe at the epoch's end"}
    for key in received:
        axes[1].plot(epochs, [max(r.get(key, np.nan), 1e-30) for r in history], label=labels[key])
    axes[1].set_yscale("log")
    axes[1].set_title("what G receives: RMS ||∂loss/∂G(z)|| per sample")
    if received:
        axes[1].legend(fontsize=7, loc="lower left")
    for net in ("G", "D"):
        axes[2].plot(epochs, [r.get(f"dead.{net}", np.nan) for r in history], label=net)
    axes[2].set_ylim(0, 1)
    axes[2].set_title("share of units <= 0 on every probe sample")
    axes[2].legend(loc="upper right")
    for ax in axes:
        ax.set_xlabel("epoch")
    _finish(fig, path, left=0.05, right=0.98, bottom=0.12, top=0.92, wspace=0.22)
    return Path(path)
