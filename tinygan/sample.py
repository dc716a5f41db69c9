"""Draw samples from a trained generator without training.

    python -m tinygan.sample RUN/checkpoint.npz --n 10000 --out samples.npy --grid samples.png

Only the generator is loaded. The ``.npy`` holds float32 images in [0, 1]: (n, 28, 28) for the
MNIST model, (n, 32, 32, 3) for the CIFAR-10 DCGAN.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from tinygan import backend
from tinygan.checkpoint import CheckpointError, load_checkpoint, subtree
from tinygan.models import IMAGE_SHAPES, LATENT_DIM, build
from tinygan.viz import save_grid, to_images


def load_generator(path: str | os.PathLike, device: str = "cpu"):
    """Rebuild and load the generator stored in checkpoint ``path``: ``(G, config_dict)``."""
    arrays, meta = load_checkpoint(path)
    try:
        config = meta["config"]
        G = build(config["model"], "G", **config.get("g_options", {}))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot rebuild the generator from its record: {exc}") from None
    G.load_state_dict(subtree(arrays, "G"), source=str(path))
    return G.to(device), config


def sample(path: str | os.PathLike, n: int, seed: int = 0, device: str = "cpu", batch_size: int = 1000) -> np.ndarray:
    """``n`` images in [0, 1] from the generator in checkpoint ``path``."""
    G, config = load_generator(path, device)
    latent = int(config.get("g_options", {}).get("latent_dim", LATENT_DIM))
    rng = np.random.default_rng(seed)
    shape = IMAGE_SHAPES[config["model"]]
    out = []
    for start in range(0, n, batch_size):
        z = rng.standard_normal((min(batch_size, n - start), latent)).astype(G.dtype)
        x = G.forward(backend.to_device(z, device), training=False)
        out.append(to_images(backend.to_numpy(x), shape, config.get("image_range", "01")))
    return np.concatenate(out).astype(np.float32)


def sample_grid(
    checkpoints: list[str | os.PathLike], path: str | os.PathLike, per_row: int = 10, seed: int = 0, device: str = "cpu"
) -> Path:
    """A PNG with one row of ``per_row`` samples from each checkpoint's generator (e.g. one per class)."""
    rows = [sample(checkpoint, per_row, seed, device) for checkpoint in checkpoints]
    return save_grid(np.concatenate(rows), path, nrow=per_row)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tinygan.sample", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a run's checkpoint.npz (or the run folder)")
    parser.add_argument("--n", type=int, default=64, help="number of images (default 64)")
    parser.add_argument("--out", help="write the images to this .npy file")
    parser.add_argument("--grid", help="write the first 64 images as a PNG grid")
    parser.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    parser.add_argument("--device", choices=backend.DEVICES, default="cpu")
    parser.add_argument("--batch-size", type=int, default=1000)
    args = parser.parse_args(argv)
    if not args.out and not args.grid:
        parser.error("nothing to do: give --out FILE.npy and/or --grid FILE.png")
    if args.n < 1:
        parser.error("--n must be at least 1")
    try:
        images = sample(args.checkpoint, args.n, args.seed, args.device, args.batch_size)
    except (CheckpointError, backend.DeviceError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        np.save(args.out, images)
        print(f"wrote {len(images)} images {images.shape[1:]} to {args.out}")
    if args.grid:
        save_grid(images[:64], args.grid)
        print(f"wrote a grid of {min(64, len(images))} images to {args.grid}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
