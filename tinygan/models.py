"""The two seed architectures, built from tinygan's own layers.

Each builder takes the options a checkpoint records, so the sampler and the tests rebuild exactly
the model that was trained: ``build(name, role, **options)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tinygan import layers as nn

LATENT_DIM = 100


def _activation(name: str) -> Any:
    if name == "relu":
        return nn.ReLU()
    if name == "leaky":
        return nn.LeakyReLU(0.2)
    raise ValueError(f"unknown activation {name!r}: expected 'relu' or 'leaky'")


def mnist_generator(
    activation: str = "relu",
    output: str = "sigmoid",
    latent_dim: int = LATENT_DIM,
    seed: int = 0,
    dtype: Any = np.float32,
) -> nn.Sequential:
    """z (100) -> Dense 256 -> Dense 512 -> Dense 1024 -> Dense 784 -> Sigmoid (or Tanh): 1,486,352 parameters."""
    if output not in ("sigmoid", "tanh"):
        raise ValueError(f"unknown output {output!r}: expected 'sigmoid' or 'tanh'")
    rng = np.random.default_rng(seed)
    layers: list[Any] = []
    width = latent_dim
    for units in (256, 512, 1024):
        layers += [nn.Dense(width, units, rng=rng, dtype=dtype), _activation(activation)]
        width = units
    layers += [nn.Dense(width, 784, rng=rng, dtype=dtype), nn.Sigmoid() if output == "sigmoid" else nn.Tanh()]
    return nn.Sequential(*layers, name="G")


def mnist_discriminator(
    activation: str = "relu", dropout: float = 0.25, seed: int = 1, dtype: Any = np.float32
) -> nn.Sequential:
    """784 -> Dense 1024 -> Dropout -> Dense 512 -> Dropout -> Dense 256 -> Dropout -> Dense 1 -> Sigmoid:
    1,460,225 parameters. The final Sigmoid is skipped in training (the loss takes logits)."""
    rng = np.random.default_rng(seed)
    layers: list[Any] = []
    width = 784
    for units in (1024, 512, 256):
        layers += [
            nn.Dense(width, units, rng=rng, dtype=dtype),
            _activation(activation),
            nn.Dropout(dropout, rng=int(rng.integers(2**63))),
        ]
        width = units
    layers += [nn.Dense(width, 1, rng=rng, dtype=dtype), nn.Sigmoid()]
    return nn.Sequential(*layers, name="D")


# How the DCGAN generator doubles the image size (``g_options["upsample"]``; absent: "convT5", the original).
# "convT5": ConvTranspose2d 5x5 stride 2 (padding 2, output_padding 1). 5 is not a multiple of the stride, so
#   output pixels alternately receive 9 and 6 (rows x columns: 3 or 2 taps each way) kernel taps: uneven
#   overlap, the checkerboard of Odena et al., 2016, "Deconvolution and checkerboard artifacts" (Distill).
# "convT4": ConvTranspose2d 4x4 stride 2 padding 1 (as the DCGAN of Radford et al., 2016): every output pixel
#   receives exactly 2 x 2 taps, so the overlap is even (the weights can still learn a pattern, but none is
#   built in). Same output size, 128*128*16 instead of 128*128*25 weights per layer.
# "resize": nearest-neighbour Upsample x2, then Conv2d 3x3 stride 1 padding 1: the resize-convolution of Odena
#   et al., every output pixel computed the same way from its neighbourhood (no uneven overlap at all).
UPSAMPLES = ("convT5", "convT4", "resize")

# How the DCGAN discriminator halves the image size (``d_options["downsample"]``; absent: "conv3", the original).
# "conv3": Conv2d 3x3 stride 2 padding 1. 3 is not a multiple of the stride, so in the input gradient that D
#   hands G, pixels alternately receive 2 and 1 taps per axis: the checkerboard of a transposed convolution,
#   in the signal G learns from. Three such layers compound it to a period of 8 pixels; at initialisation the
#   mean |dL/dx| over a smooth batch varies 1.8-2.0x within each 8 x 8 cell (bench/dev/d_gradient_period.py).
# "conv4": Conv2d 4x4 stride 2 padding 1 (as the DCGAN of Radford et al., 2016): every input pixel feeds
#   exactly 2 x 2 taps, an even overlap (1.3-1.4x within a cell, the border's share). Same output sizes.
DOWNSAMPLES = ("conv3", "conv4")


def dcgan_generator(
    latent_dim: int = LATENT_DIM, seed: int = 0, dtype: Any = np.float32, upsample: str = "convT5"
) -> nn.Sequential:
    """z (100) -> Dense 2048 -> (128, 4, 4) -> [BN, LeakyReLU, ConvT 5x5 stride 2] x3 -> Tanh: (3, 32, 32),
    826,883 parameters. ``upsample="convT4"``: ConvT 4x4 stride 2 padding 1 instead (see :data:`UPSAMPLES`),
    603,971 parameters; ``upsample="resize"``: Upsample x2 then Conv 3x3, 430,595 parameters."""
    if upsample not in UPSAMPLES:
        raise ValueError(f"unknown upsample {upsample!r}: expected one of {list(UPSAMPLES)}")
    rng = np.random.default_rng(seed)

    def up(cin: int, cout: int) -> list[Any]:
        if upsample == "convT4":
            return [nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, rng=rng, dtype=dtype)]
        if upsample == "resize":
            return [nn.Upsample(2), nn.Conv2d(cin, cout, 3, stride=1, padding=1, rng=rng, dtype=dtype)]
        return [nn.ConvTranspose2d(cin, cout, 5, stride=2, padding=2, output_padding=1, rng=rng, dtype=dtype)]

    layers = [nn.Dense(latent_dim, 2048, rng=rng, dtype=dtype), nn.Reshape(128, 4, 4)]
    layers += [nn.BatchNorm2d(128, dtype=dtype), nn.LeakyReLU(0.2), *up(128, 128)]
    layers += [nn.BatchNorm2d(128, dtype=dtype), nn.LeakyReLU(0.2), *up(128, 64)]
    layers += [nn.BatchNorm2d(64, dtype=dtype), nn.LeakyReLU(0.2), *up(64, 3), nn.Tanh()]
    return nn.Sequential(*layers, name="G")


def dcgan_discriminator(seed: int = 1, dtype: Any = np.float32, downsample: str = "conv3") -> nn.Sequential:
    """(3, 32, 32) -> Conv 3x3 64 -> Conv 3x3/2 128 -> Conv 3x3/2 128 -> Conv 3x3/2 32 -> Flatten (512) -> Dense 1,
    LeakyReLU 0.2 after each conv: 260,641 parameters. The output is a logit (sigmoid through the loss).
    ``downsample="conv4"``: the three stride-2 convolutions 4x4 padding 1 instead (see :data:`DOWNSAMPLES`),
    461,345 parameters."""
    if downsample not in DOWNSAMPLES:
        raise ValueError(f"unknown downsample {downsample!r}: expected one of {list(DOWNSAMPLES)}")
    rng = np.random.default_rng(seed)
    layers: list[Any] = []
    for cin, cout, stride in ((3, 64, 1), (64, 128, 2), (128, 128, 2), (128, 32, 2)):
        kernel = 4 if stride == 2 and downsample == "conv4" else 3
        layers += [nn.Conv2d(cin, cout, kernel, stride=stride, padding=1, rng=rng, dtype=dtype), nn.LeakyReLU(0.2)]
    layers += [nn.Flatten(), nn.Dense(512, 1, rng=rng, dtype=dtype)]
    return nn.Sequential(*layers, name="D")


BUILDERS = {
    ("mnist_dense", "G"): mnist_generator,
    ("mnist_dense", "D"): mnist_discriminator,
    ("dcgan", "G"): dcgan_generator,
    ("dcgan", "D"): dcgan_discriminator,
}

# What each model is called in messages (a checkpoint of one resumed as the other says which it holds).
MODEL_TITLES = {
    "mnist_dense": "the dense MNIST GAN (examples/mnist_dense.py)",
    "dcgan": "the CIFAR-10 DCGAN (examples/cifar_dcgan.py)",
}

# What a sample from each family looks like: (channels, height, width), and the range of G's output.
IMAGE_SHAPES = {"mnist_dense": (1, 28, 28), "dcgan": (3, 32, 32)}


def build(name: str, role: str, **options: Any) -> nn.Sequential:
    """Build model ``name`` ("mnist_dense" or "dcgan"), ``role`` "G" or "D", with builder ``options``."""
    try:
        builder = BUILDERS[(name, role)]
    except KeyError:
        known = sorted({n for n, _ in BUILDERS})
        raise ValueError(f"unknown model {name!r} role {role!r}: known models {known}, roles 'G' and 'D'") from None
    return builder(**options)
