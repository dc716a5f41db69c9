"""The DCGAN generator's --upsample option (issue 14: checkerboard artifacts): the layers it builds, its record
in the run's configuration and checkpoint (the sampler and --resume rebuild it from there), and the original
recipe unchanged by it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from example_scripts import CIFAR_EXAMPLE, load_example, run_cifar
from formats import write_cifar_folder

from tinygan import layers as nn
from tinygan.checkpoint import read_meta
from tinygan.config import GANConfig
from tinygan.models import UPSAMPLES, build, dcgan_generator
from tinygan.recipes import CIFAR_RECIPES
from tinygan.sample import load_generator


@pytest.fixture(scope="module")
def example():
    return load_example(CIFAR_EXAMPLE)


def layer_list(model: nn.Sequential) -> list[tuple]:
    """Each layer's class and geometry: what must stay the same for the original recipe."""
    rows = []
    for layer in model.layers:
        row: tuple = (type(layer).__name__,)
        for name in ("kernel_size", "stride", "padding", "output_padding", "in_channels", "out_channels"):
            if hasattr(layer, name):
                row += (name, getattr(layer, name))
        for name, value in sorted(getattr(layer, "params", {}).items()):
            row += (name, tuple(np.shape(value)))
        rows.append(row)
    return rows


# The original generator's layers, written out (ConvTranspose 5x5 stride 2, padding 2, output_padding 1).
ORIGINAL_CONVT = [(128, 128), (128, 64), (64, 3)]


def test_convT4_builds_even_overlap_layers_of_the_same_output():
    original, even = dcgan_generator(seed=3), dcgan_generator(seed=3, upsample="convT4")
    ups = [layer for layer in original.layers if isinstance(layer, nn.ConvTranspose2d)]
    assert [(u.in_channels, u.out_channels) for u in ups] == ORIGINAL_CONVT
    assert all((u.kernel_size, u.stride, u.padding, u.output_padding) == ((5, 5), (2, 2), (2, 2), (1, 1)) for u in ups)
    ups4 = [layer for layer in even.layers if isinstance(layer, nn.ConvTranspose2d)]
    assert [(u.in_channels, u.out_channels) for u in ups4] == ORIGINAL_CONVT
    assert all((u.kernel_size, u.stride, u.padding, u.output_padding) == ((4, 4), (2, 2), (1, 1), (0, 0)) for u in ups4)
    # Same layers otherwise, same output shape.
    assert [type(a) for a in original.layers] == [type(b) for b in even.layers]
    z = np.random.default_rng(0).standard_normal((3, 100)).astype(np.float32)
    assert even.forward(z, training=False).shape == original.forward(z, training=False).shape == (3, 3, 32, 32)
    assert even.num_parameters() == 603_971
    assert original.num_parameters() == 826_883


def test_convT4_overlap_is_even_and_convT5_is_not():
    """Why: a ConvTranspose of all-ones weights on an all-ones input counts the taps each output pixel
    receives. 5x5 stride 2 alternates 3 and 2 taps per axis (the checkerboard); 4x4 stride 2 gives 2
    everywhere away from the border."""
    for kernel, padding, output_padding, uneven in ((5, 2, 1, True), (4, 1, 0, False)):
        layer = nn.ConvTranspose2d(1, 1, kernel, stride=2, padding=padding, output_padding=output_padding)
        layer.params["W"][...] = 1
        layer.params["b"][...] = 0
        taps = layer.forward(np.ones((1, 1, 8, 8), np.float32), training=False)[0, 0, 2:-2, 2:-2]
        assert (len(np.unique(taps)) > 1) == uneven, (kernel, np.unique(taps))


def test_unknown_upsample_is_refused():
    with pytest.raises(
        ValueError, match=r"unknown upsample 'bilinear': expected one of \[.convT5., .convT4., .resize.\]"
    ):
        dcgan_generator(upsample="bilinear")
    with pytest.raises(ValueError, match=r"g_options.upsample: expected one of \[.convT5., .convT4., .resize.\]"):
        GANConfig.from_dict({"model": "dcgan", "g_options": {"upsample": "convT3"}})
    with pytest.raises(ValueError, match="g_options.upsample: expected no upsample"):
        GANConfig.from_dict({"model": "mnist_dense", "g_options": {"upsample": "convT4"}})


def test_original_recipe_builds_the_original_generator(example):
    config = example.make_config(example.parse_args(["--recipe", "original", "--class", "cat"]))
    assert config.g_options == {"seed": 0}  # the record of an original run is what it always was
    built = build(config.model, "G", **config.g_options)
    assert layer_list(built) == layer_list(dcgan_generator(seed=0))
    ups = [layer for layer in built.layers if isinstance(layer, nn.ConvTranspose2d)]
    assert [u.kernel_size for u in ups] == [(5, 5)] * 3


def test_default_recipe_builds_the_resize_generator(example):
    config = example.make_config(example.parse_args(["--class", "cat"]))
    assert config.g_options == {"seed": 0, "upsample": "resize"}
    assert layer_list(build(config.model, "G", **config.g_options)) == layer_list(
        dcgan_generator(seed=0, upsample="resize")
    )
    # The option still overrides the recipe, the original's upsampling included.
    config = example.make_config(example.parse_args(["--class", "cat", "--upsample", "convT5"]))
    assert config.g_options == {"seed": 0}


def test_original_recipe_is_the_challenge_recipe():
    assert CIFAR_RECIPES["original"] == {
        "epochs": 150,
        "batch_size": 128,
        "lr_d": 2e-4,
        "lr_g": 1e-4,
        "beta1": 0.5,
        "real_label": (0.8, 1.0),
        "fake_label": (0.0, 0.1),
    }


def test_upsample_option_goes_into_g_options(example):
    config = example.make_config(example.parse_args(["--upsample", "convT4", "--seed", "5", "--class", "cat"]))
    assert config.g_options == {"seed": 5, "upsample": "convT4"}
    config = example.make_config(example.parse_args(["--upsample", "convT5", "--class", "cat", "--recipe", "original"]))
    assert config.g_options == {"seed": 0}
    assert set(UPSAMPLES) == {"convT5", "convT4", "resize"}


def test_checkpoint_round_trip_sampler_and_resume(tmp_path):
    data = tmp_path / "cifar"
    write_cifar_folder(data, per_batch=20, rng=np.random.default_rng(0))
    out = tmp_path / "run"
    common = ["--data-dir", str(data), "--batch-size", "5", "--no-progress", "--class", "cat"]
    first = run_cifar(*common, "--epochs", "1", "--upsample", "convT4", "--out", str(out), cache=tmp_path / "c")
    assert first.returncode == 0, first.stderr
    assert "Total params: 603,971" in first.stdout
    assert json.loads((out / "config.json").read_text())["g_options"] == {"seed": 0, "upsample": "convT4"}

    # The sampler rebuilds the 4x4 generator from the checkpoint and gets its weights back.
    G, config = load_generator(out / "checkpoint.npz")
    ups = [layer for layer in G.layers if isinstance(layer, nn.ConvTranspose2d)]
    assert [u.kernel_size for u in ups] == [(4, 4)] * 3
    assert config.g_options["upsample"] == "convT4"

    # --resume keeps it: the same value is accepted, another one is refused in one line.
    refused = run_cifar("--resume", str(out), "--upsample", "convT5", "--epochs", "2", cache=tmp_path / "c")
    assert refused.returncode == 1
    assert f"error: --upsample: {out} was trained with convT4, received convT5" in refused.stderr
    resumed = run_cifar("--resume", str(out), "--upsample", "convT4", "--epochs", "2", cache=tmp_path / "c")
    assert resumed.returncode == 0, resumed.stderr
    assert read_meta(out)["epoch"] == 2
    G2, _ = load_generator(out / "checkpoint.npz")
    assert layer_list(G2) == layer_list(G)


def test_resize_builds_upsample_then_conv3x3():
    resize = dcgan_generator(seed=3, upsample="resize")
    kinds = [type(layer).__name__ for layer in resize.layers]
    assert kinds == [
        "Dense", "Reshape",
        "BatchNorm2d", "LeakyReLU", "Upsample", "Conv2d",
        "BatchNorm2d", "LeakyReLU", "Upsample", "Conv2d",
        "BatchNorm2d", "LeakyReLU", "Upsample", "Conv2d", "Tanh",
    ]  # fmt: skip
    convs = [layer for layer in resize.layers if isinstance(layer, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == ORIGINAL_CONVT
    assert all((c.kernel_size, c.stride, c.padding) == ((3, 3), (1, 1), (1, 1)) for c in convs)
    assert all(layer.scale_factor == 2 for layer in resize.layers if isinstance(layer, nn.Upsample))
    assert resize.num_parameters() == 430_595
    z = np.random.default_rng(0).standard_normal((2, 100)).astype(np.float32)
    assert resize.forward(z, training=False).shape == (2, 3, 32, 32)
    config = GANConfig.from_dict({"model": "dcgan", "g_options": {"seed": 1, "upsample": "resize"}})
    assert layer_list(build(config.model, "G", **config.g_options)) == layer_list(
        dcgan_generator(seed=1, upsample="resize")
    )
