"""How periodic is the gradient the CIFAR-10 DCGAN's discriminator hands its generator? (issue 14, checkerboard)

G learns only from dL/dx, D's gradient with respect to the image. A stride-2 convolution whose kernel is not
a multiple of 2 feeds some input pixels more taps than others (3x3: 2 and 1 per axis), so dL/dx carries a
pattern of period 2; D's three such layers compound it to period 8, the size of the blotch grid in the samples.
This measures it at initialisation, in float64, for both choices of tinygan.models.DOWNSAMPLES: the mean
|dL/dx| over a batch of smooth random images and their channels, folded into one 8 x 8 cell (its max / min),
and the share of the map's non-constant power on the period-8 lattice.

    python -m bench.dev.d_gradient_period
"""

from __future__ import annotations

import numpy as np

from tinygan.models import DOWNSAMPLES, dcgan_discriminator


def smooth_images(n: int, seed: int = 0) -> np.ndarray:
    """White noise low-passed with a Gaussian in frequency (sigma 0.05 cycles a pixel), unit variance."""
    x = np.random.default_rng(seed).standard_normal((n, 3, 32, 32))
    f = np.fft.fftfreq(32)
    gain = np.exp(-(f[:, None] ** 2 + f[None, :] ** 2) / (2 * 0.05**2))
    x = np.real(np.fft.ifft2(np.fft.fft2(x) * gain))
    return x / x.std()


def period_figures(grad_map: np.ndarray, period: int = 8) -> tuple[float, float]:
    """(max / min of the map folded into one period x period cell, share of its non-constant power at
    frequencies that are multiples of 1/period on both axes)."""
    size = grad_map.shape[0]
    cell = grad_map.reshape(size // period, period, size // period, period).mean(axis=(0, 2))
    power = np.abs(np.fft.fft2(grad_map - grad_map.mean())) ** 2
    lattice = np.arange(0, size, size // period)
    return float(cell.max() / cell.min()), float(power[np.ix_(lattice, lattice)].sum() / power.sum())


def main() -> None:
    x = smooth_images(64)
    for downsample in DOWNSAMPLES:
        for seed in (1, 2, 3):
            D = dcgan_discriminator(seed=seed, dtype=np.float64, downsample=downsample)
            D.forward(x, training=True)
            dx = D.backward(np.ones((len(x), 1)), param_grads=False, input_grad=True)
            ratio, share = period_figures(np.abs(dx).mean(axis=(0, 1)))
            print(f"{downsample} D seed {seed}: 8x8 cell max/min {ratio:.2f}, period-8 share of the power {share:.2f}")


if __name__ == "__main__":
    main()
