"""Train the dense MNIST GAN.

    python examples/mnist_dense.py                    # the default recipe on the CPU
    python examples/mnist_dense.py --device gpu       # the same on a CUDA GPU (pip install 'tinygan[gpu]')
    python examples/mnist_dense.py --recipe original  # the original recipe, 180 epochs
    python examples/mnist_dense.py --resume runs/mnist_dense-...   # continue a stopped run exactly

Generator: z (100) -> Dense 256 -> 512 -> 1024 -> 784 (1,486,352 parameters).
Discriminator: 784 -> Dense 1024 -> 512 -> 256 -> 1, Dropout 0.25 after each hidden layer (1,460,225).
The original recipe: ReLU, a sigmoid output with images in [0, 1], hard labels, Adam 2e-4 (beta1 0.5),
batch 125, 180 epochs. The default recipe keeps the architecture and changes the training: LeakyReLU 0.2,
a tanh output with images in [-1, 1], real labels 0.9, instance noise 0.1 annealed to 0, G trained with
the minimax loss, Adam 6e-4 for both networks, 30 epochs.
Data: all 70,000 MNIST images (read from --data-dir, or the cache, downloaded when online, and
otherwise the 10,000-image MNIST test set embedded in the package; an explicit --data-dir must hold
the files). Writes into the run folder: sample grids (samples/), samples.gif, losses.png, grad_norms.png,
diagnostics.png, metrics.csv, config.json and checkpoint.npz (after every epoch; Ctrl-C saves it too).

--ema-decay D samples from an exponential moving average of G's weights; --augment POLICY applies
differentiable augmentation (translation, cutout, color) to everything D sees; --score-every N scores
samples with tinygan.metrics every N epochs (FID into metrics.csv and quality.png, the best epoch kept
as best.npz). The default recipe keeps an EMA at 0.999; the rest is off unless asked for.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

# tinygan before NumPy: its import sets OpenBLAS's thread timeout, which NumPy reads once when it loads.
from tinygan import cli
from tinygan.config import GANConfig
from tinygan.data.mnist import load_mnist, scale_mnist
from tinygan.recipes import MNIST_RECIPES

if TYPE_CHECKING:
    import numpy as np


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = cli.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1] + cli.RESUME_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cli.add_common_options(parser, MNIST_RECIPES)
    parser.add_argument("--activation", choices=("relu", "leaky"), help="ReLU or LeakyReLU(0.2) in both networks")
    parser.add_argument("--output", choices=("sigmoid", "tanh"), help="G's output: sigmoid in [0,1] or tanh in [-1,1]")
    return cli.check_options(parser, parser.parse_args(argv))


def make_config(args: argparse.Namespace) -> GANConfig:
    recipe = args.recipe or "default"
    settings = cli.apply_recipe(args, MNIST_RECIPES[recipe])
    activation = args.activation or settings["activation"]
    output = args.output or settings["output"]
    common = cli.common_config(args, recipe)
    return GANConfig(
        model="mnist_dense",
        data_options={
            "dataset": "mnist",
            "split": "all",
            "limit": args.limit,
            "scale": output,
            "data_dir": cli.data_dir_record(args.data_dir),
        },
        g_options={"activation": activation, "output": output, "seed": common["seed"]},
        d_options={"activation": activation, "seed": common["seed"] + 1},
        image_range="tanh" if output == "tanh" else "01",
        **common,
        **cli.config_fields(settings),
    )


def recorded_options(config: GANConfig) -> dict[str, Any]:
    """This example's own options as the run ``config`` records them (what --resume compares with)."""
    return {"activation": config.g_options.get("activation"), "output": config.g_options.get("output")}


def load_data(options: dict[str, Any], data_dir: str | None) -> tuple[np.ndarray, str]:
    loaded = load_mnist(data_dir, options.get("split", "all"))
    images = loaded.images
    if options.get("limit"):
        images = images[: options["limit"]]
    print(f"data: {loaded.source}, {len(images)} images")
    return scale_mnist(images, "tanh" if options.get("scale") == "tanh" else "01"), _short(loaded.source)


def _short(source: Any) -> str:
    return f"{source.dataset} from {source.kind} ({source.location})"


def main(argv: list[str] | None = None) -> int:
    return cli.run(parse_args(argv), "mnist_dense", make_config, load_data, recorded_options)


if __name__ == "__main__":
    sys.exit(main())
