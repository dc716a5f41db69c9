"""Train the CIFAR-10 DCGAN: one model per class (as the original did), one class, or all classes jointly.

    python examples/cifar_dcgan.py --class all       # ten models, one per class, then an overview grid
    python examples/cifar_dcgan.py --class cat       # one model for one class
    python examples/cifar_dcgan.py --class joint     # one model on every class together
    python examples/cifar_dcgan.py --resume runs/cifar_dcgan-...   # continue a stopped run exactly

Generator: z (100) -> Dense 2048 -> (128, 4, 4) -> [BatchNorm, LeakyReLU 0.2, ConvTranspose 5x5 stride 2] x3
-> Tanh: 32x32x3 images (826,883 parameters). Discriminator: Conv 3x3 64 -> Conv 3x3/2 128 -> Conv 3x3/2
128 -> Conv 3x3/2 32 -> Dense 1, LeakyReLU 0.2 (260,641 parameters).
Recipe: Adam beta1 0.5, D lr 2e-4, G lr 1e-4, batch 128, 150 epochs, labels smoothed to real ~ U(0.8, 1.0)
and fake ~ U(0.0, 0.1). Data: the CIFAR-10 python version (cifar-10-python.tar.gz or its extracted
cifar-10-batches-py/ folder) from --data-dir or the cache, downloaded when online.

--auto-stop stops a model once its discriminator has recognised at least --auto-stop-threshold of the
generated images (D(G(z)) < 0.5) for --auto-stop-patience epochs in a row, and keeps the most balanced
epoch (D's accuracy on generated images closest to 50%) as best.npz beside checkpoint.npz.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

# tinygan before NumPy: its import sets OpenBLAS's thread timeout, which NumPy reads once when it loads.
from tinygan import cli
from tinygan.checkpoint import read_meta
from tinygan.data.cifar10 import CLASS_NAMES, cifar10_for_gan
from tinygan.recipes import CIFAR_RECIPES
from tinygan.sample import sample_grid
from tinygan.train import GANConfig

if TYPE_CHECKING:
    import numpy as np

PLAN_FILE = "classes.json"  # in the root of a per-class run: which classes, with which options


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cli.add_common_options(parser, CIFAR_RECIPES)
    parser.add_argument(
        "--class",
        dest="class_name",
        default="all",
        choices=[*CLASS_NAMES, "all", "joint"],
        help="a class name, 'all' (one model per class, default) or 'joint' (one model on every class)",
    )
    parser.add_argument("--auto-stop", action="store_true", help="stop when D dominates (see below)")
    parser.add_argument("--auto-stop-threshold", type=float, default=0.95)
    parser.add_argument("--auto-stop-patience", type=int, default=10)
    return parser.parse_args(argv)


def make_config(args: argparse.Namespace) -> GANConfig:
    settings = cli.apply_recipe(args, CIFAR_RECIPES[args.recipe])
    return GANConfig(
        model="dcgan",
        data_options={
            "dataset": "cifar10",
            "split": "train",
            "class": None if args.class_name == "joint" else args.class_name,
            "limit": args.limit,
        },
        g_options={"seed": args.seed},
        d_options={"seed": args.seed + 1},
        seed=args.seed,
        device=args.device or "cpu",
        cuda_graph=not args.no_cuda_graph,
        g_loss=args.g_loss,
        sample_every=args.sample_every or 1,
        checkpoint_every=args.checkpoint_every or 0,
        auto_stop=args.auto_stop,
        auto_stop_threshold=args.auto_stop_threshold,
        auto_stop_patience=args.auto_stop_patience,
        image_range="tanh",
        **cli.config_fields(settings),
    )


def load_data(options: dict[str, Any], data_dir: str | None) -> np.ndarray:
    images = cifar10_for_gan(data_dir, options.get("split", "train"), class_name=options.get("class"))
    if options.get("limit"):
        images = images[: options["limit"]]
    label = options.get("class") or "all classes"
    print(f"data: CIFAR-10 {options.get('split', 'train')} split, {label}: {len(images)} images")
    return images


def run_all_classes(args: argparse.Namespace) -> int:
    """One model per class, each in its own subfolder, then a 10-row overview grid."""
    if args.resume:
        root = Path(args.resume)
        plan = json.loads((root / PLAN_FILE).read_text())
    else:
        root = Path(args.out) if args.out else cli.new_run_dir("cifar_dcgan")
        if (root / PLAN_FILE).exists():
            return cli.fail(f"{root} already holds a run: use --resume {root}, or another --out", cli.EXIT_ERROR)
        root.mkdir(parents=True, exist_ok=True)
        plan = {"classes": CLASS_NAMES, "argv": sys.argv[1:]}
        (root / PLAN_FILE).write_text(json.dumps(plan, indent=2) + "\n")
    for name in plan["classes"]:
        folder = root / name
        one = copy.copy(args)
        one.class_name, one.out, one.resume = name, str(folder), None
        if (folder / "checkpoint.npz").is_file():
            if _finished(folder):
                print(f"{name}: already trained, skipping")
                continue
            one.resume = str(folder)
        print(f"=== class {name} ({plan['classes'].index(name) + 1}/{len(plan['classes'])}) ===")
        code = cli.run(one, "cifar_dcgan", make_config, load_data)
        if code != 0:
            if code == cli.EXIT_INTERRUPTED:
                print(f"to continue every class: python {sys.argv[0]} --resume {root}")
            return code
    overview = save_overview(root, plan["classes"], args.device or "cpu")
    print(f"overview of every class: {overview}")
    return 0


def _finished(folder: Path) -> bool:
    meta = read_meta(folder)
    return meta["epoch"] >= meta["config"]["epochs"]


def save_overview(root: Path, classes: list[str], device: str = "cpu", per_class: int = 10) -> Path:
    """One row per class: samples from each class's model (best.npz where auto-stop kept one)."""
    checkpoints = []
    for name in classes:
        best = root / name / "best.npz"
        checkpoints.append(best if best.is_file() else root / name / "checkpoint.npz")
    return sample_grid(checkpoints, root / "overview.png", per_row=per_class, device=device)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    resuming_all = bool(args.resume) and (Path(args.resume) / PLAN_FILE).is_file()
    if resuming_all or (not args.resume and args.class_name == "all"):
        return run_all_classes(args)
    return cli.run(args, "cifar_dcgan", make_config, load_data)


if __name__ == "__main__":
    sys.exit(main())
