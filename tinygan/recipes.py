"""Named training recipes: the settings each example starts from before its command-line options.

``original`` reproduces the work this project started from; ``default`` is what we recommend,
found by experiment (README, "Results"), with the same architectures.
"""

from __future__ import annotations

from typing import Any

MNIST_RECIPES: dict[str, dict[str, Any]] = {
    # Keras original: Glorot-uniform Dense layers, ReLU, Adam(2e-4, beta1 0.5) for both networks,
    # batch 125, hard 0/1 labels, 180 epochs.
    "original": {
        "epochs": 180,
        "batch_size": 125,
        "lr_d": 2e-4,
        "lr_g": 2e-4,
        "beta1": 0.5,
        "real_label": (1.0, 1.0),
        "fake_label": (0.0, 0.0),
        "activation": "relu",
        "output": "sigmoid",
    },
    # Found by experiment on the full MNIST set (README, "Results"): LeakyReLU, a tanh output with images in
    # [-1, 1], one-sided label smoothing and annealed instance noise. Readable digits of all ten classes by
    # epoch 10; the original recipe covers six classes at epoch 60.
    "default": {
        "epochs": 30,
        "batch_size": 125,
        # 3x the original's rate: ahead at every scored epoch on both seeds (bench/results/recipe-study-2026-12-02.md,
        # fifth study); the same FID as lr 4e-4 with batch 64 at half the steps per epoch.
        "lr_d": 6e-4,
        "lr_g": 6e-4,
        "beta1": 0.5,
        "real_label": (0.9, 0.9),  # one-sided label smoothing (Salimans et al., 2016)
        "fake_label": (0.0, 0.0),
        "instance_noise": 0.1,  # N(0, 0.1^2) on D's inputs, annealed to 0 (Sonderby et al., 2016)
        "activation": "leaky",
        "output": "tanh",
        # Samples from an exponential moving average of G's weights (Yazici et al., 2019): Frechet distance
        # 5.75 -> 3.36 at epoch 30, on both seeds of the study (bench/results/recipe-study-2026-12-02.md).
        "ema_decay": 0.999,
        # G's original minimax loss log(1 - D(G(z))): under this recipe D never dominates, and minimax beat the
        # non-saturating loss on both seeds, on every figure (Frechet distance at epoch 30 3.55 / 3.18 ->
        # 1.90 / 1.79 on 10,000 samples; bench/results/recipe-study-2026-12-02.md, second study). Why it can
        # win here and collapses under the original recipe: docs/backprop.md, section 11.
        "g_loss": "minimax",
    },
}

# The original DCGAN of the challenge: D lr 2e-4, G lr 1e-4, beta1 0.5, batch 128, smoothed labels
# real ~ U(0.8, 1.0), fake ~ U(0.0, 0.1), 150 epochs, G upsampling by ConvTranspose 5x5 stride 2.
_CIFAR_ORIGINAL: dict[str, Any] = {
    "epochs": 150,
    "batch_size": 128,
    "lr_d": 2e-4,
    "lr_g": 1e-4,
    "beta1": 0.5,
    "real_label": (0.8, 1.0),
    "fake_label": (0.0, 0.1),
}

CIFAR_RECIPES: dict[str, dict[str, Any]] = {
    "original": dict(_CIFAR_ORIGINAL),
    # Found by the CIFAR-10 recipe study (bench/results/cifar-study-2026-12-02.md, round 2): an EMA of G over
    # DiffAugment translation,cutout (Zhao et al. 2020) beat the original's settings at 390 epochs on both seeds
    # (mean Frechet distance 806 / 1,062 against 1,160 / 1,328). At 150 epochs (round 1) no candidate held on
    # both seeds. Rounds 3-5 (tenth session): with the EMA and the augmentation, 780 epochs (2,340 steps a class)
    # beat 390 on both seeds (mean distance 300 / 397 against 728 / 990; recognised 68% / 75% against 50% /
    # 52%), and neither upsampling change did at 390. A recipe may also set "upsample" (tinygan.models.UPSAMPLES)
    # and "downsample" (tinygan.models.DOWNSAMPLES).
    # A grid every 5 epochs (and at the last): 156 frames of 15 steps each, about the original's 150 frames, where
    # a grid every epoch (3 steps) would write 780 a class.
    # Rounds 6-7 (eleventh session): G upsampling by resize-convolution and D downsampling by 4x4 stride-2
    # convolutions, so that neither network has an uneven overlap (tinygan.models.UPSAMPLES, DOWNSAMPLES), beat
    # the 780-epoch default on both seeds (mean distance 173 / 152 against 300 / 397; every class recognised at
    # least half the time on both seeds) and took the period-8 blotch grid out of the samples.
    "default": {
        **_CIFAR_ORIGINAL,
        "epochs": 780,
        "ema_decay": 0.999,
        "augment": "translation,cutout",
        "sample_every": 5,
        "upsample": "resize",
        "downsample": "conv4",
    },
}
