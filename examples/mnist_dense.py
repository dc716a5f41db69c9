"""Train the dense MNIST GAN.

    python examples/mnist_dense.py                    # the default recipe on the CPU
    python examples/mnist_dense.py --device gpu       # the same on a CUDA GPU (pip install 'tinygan[gpu]')
    python examples/mnist_dense.py --recipe original  # the original recipe, 180 epochs
    python examples/mnist_dense.py --resume runs/mnist_dense-...   # continue a stopped run exactly

Generator: z (100) -> Dense 256 -> 512 -> 1024 -> 784 (1,486,352 parameters).
Discriminator: 784 -> Dense 1024 -> 512 -> 256 -> 1, Dropout 0.25 after each hidden layer (1,460,225).
The original recipe: ReLU, a sigmoid output with images in [0, 1], hard labels, Adam 2e-4 (beta1 0.5),
batch 125, 180 epochs. The default recipe keeps the architecture and changes the training: LeakyReLU 0.2,
a tanh output with images in [-1, 1], real labels 0.9, instance noise 0.1 annealed to 0, 30 epochs.
Data: all 70,000 MNIST images (read from --data-dir or the cache, downloaded when online, and
otherwise the 10,000-image MNIST test set embedded in the package).
Writes into the run folder: sample grids (samples/), samples.gif, losses.png, grad_norms.png,
metrics.csv, config.json and checkpoint.npz (after every epoch; Ctrl-C saves it too).
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

# tinygan before NumPy: its import sets OpenBLAS's thread timeout, which NumPy reads once when it loads.
from tinygan import cli
from tinygan.data.mnist import load_mnist, scale_mnist
from tinygan.recipes import MNIST_RECIPES
from tinygan.train import GANConfig

if TYPE_CHECKING:
    import numpy as np


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cli.add_common_options(parser, MNIST_RECIPES)
    parser.add_argument("--activation", choices=("relu", "leaky"), help="ReLU or LeakyReLU(0.2) in both networks")
    parser.add_argument("--output", choices=("sigmoid", "tanh"), help="G's output: sigmoid in [0,1] or tanh in [-1,1]")
    return parser.parse_args(argv)


def make_config(args: argparse.Namespace) -> GANConfig:
    settings = cli.apply_recipe(args, MNIST_RECIPES[args.recipe])
    activation = args.activation or settings["activation"]
    output = args.output or settings["output"]
    return GANConfig(
        model="mnist_dense",
        data_options={"dataset": "mnist", "split": "all", "limit": args.limit, "scale": output},
        g_options={"activation": activation, "output": output, "seed": args.seed},
        d_options={"activation": activation, "seed": args.seed + 1},
        seed=args.seed,
        device=args.device or "cpu",
        cuda_graph=not args.no_cuda_graph,
        g_loss=args.g_loss,
        sample_every=args.sample_every or 1,
        checkpoint_every=args.checkpoint_every or 0,
        image_range="tanh" if output == "tanh" else "01",
        **cli.config_fields(settings),
    )


def load_data(options: dict[str, Any], data_dir: str | None) -> np.ndarray:
    loaded = load_mnist(data_dir, options.get("split", "all"))
    images = loaded.images
    print(f"data: {loaded.source.dataset} from {loaded.source.kind} ({loaded.source.location}), {len(images)} images")
    if options.get("limit"):
        images = images[: options["limit"]]
    return scale_mnist(images, "tanh" if options.get("scale") == "tanh" else "01")


def main(argv: list[str] | None = None) -> int:
    return cli.run(parse_args(argv), "mnist_dense", make_config, load_data)


if __name__ == "__main__":
    sys.exit(main())
