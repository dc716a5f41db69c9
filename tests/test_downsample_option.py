"""The DCGAN discriminator's --downsample option (issue 14: the checkerboard in the gradient G learns from): the
layers it builds, why the original's are uneven, its record in the run's configuration and checkpoint (--resume
rebuilds D from there), and the original recipe unchanged by it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from example_scripts import CIFAR_EXAMPLE, load_example, run_cifar
from formats import write_cifar_folder

from tinygan import layers as nn
from tinygan.checkpoint import read_meta
from tinygan.config import GANConfig
from tinygan.models import DOWNSAMPLES, build, dcgan_discriminator


@pytest.fixture(scope="module")
def example():
    return load_example(CIFAR_EXAMPLE)


def convs(model: nn.Sequential) -> list[tuple]:
    return [
        (c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding)
        for c in model.layers
        if isinstance(c, nn.Conv2d)
    ]


def test_conv4_builds_even_overlap_layers_of_the_same_output():
    original, even = dcgan_discriminator(seed=3), dcgan_discriminator(seed=3, downsample="conv4")
    assert convs(original) == [
        (3, 64, (3, 3), (1, 1), (1, 1)),
        (64, 128, (3, 3), (2, 2), (1, 1)),
        (128, 128, (3, 3), (2, 2), (1, 1)),
        (128, 32, (3, 3), (2, 2), (1, 1)),
    ]
    assert convs(even) == [
        (3, 64, (3, 3), (1, 1), (1, 1)),
        (64, 128, (4, 4), (2, 2), (1, 1)),
        (128, 128, (4, 4), (2, 2), (1, 1)),
        (128, 32, (4, 4), (2, 2), (1, 1)),
    ]
    assert [type(a) for a in original.layers] == [type(b) for b in even.layers]
    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    assert even.forward(x, training=False).shape == original.forward(x, training=False).shape == (3, 1)
    assert original.num_parameters() == 260_641
    assert even.num_parameters() == 461_345


def test_conv4_gradient_overlap_is_even_and_conv3_is_not():
    """Why: the input gradient of a convolution with all-ones weights and an all-ones upstream gradient counts the
    taps each input pixel feeds. 3x3 stride 2 alternates 2 and 1 taps per axis (the checkerboard G receives);
    4x4 stride 2 gives 2 everywhere away from the border."""
    for kernel, uneven in ((3, True), (4, False)):
        layer = nn.Conv2d(1, 1, kernel, stride=2, padding=1, dtype=np.float64)
        layer.params["W"][...] = 1
        layer.params["b"][...] = 0
        layer.forward(np.ones((1, 1, 16, 16)), training=True)
        taps = layer.backward(np.ones((1, 1, 8, 8)), param_grads=False, input_grad=True)[0, 0, 2:-2, 2:-2]
        assert (len(np.unique(taps)) > 1) == uneven, (kernel, np.unique(taps))


def test_unknown_downsample_is_refused():
    with pytest.raises(ValueError, match=r"unknown downsample 'pool': expected one of \[.conv3., .conv4.\]"):
        dcgan_discriminator(downsample="pool")
    with pytest.raises(ValueError, match=r"d_options.downsample: expected one of \[.conv3., .conv4.\]"):
        GANConfig.from_dict({"model": "dcgan", "d_options": {"downsample": "conv5"}})
    with pytest.raises(ValueError, match="d_options.downsample: expected no downsample"):
        GANConfig.from_dict({"model": "mnist_dense", "d_options": {"downsample": "conv4"}})


def test_original_recipe_builds_the_original_discriminator(example):
    config = example.make_config(example.parse_args(["--recipe", "original", "--class", "cat", "--seed", "4"]))
    assert config.d_options == {"seed": 5}  # the record of an original run is what it always was
    assert convs(build(config.model, "D", **config.d_options)) == convs(dcgan_discriminator(seed=5))


def test_default_recipe_builds_the_conv4_discriminator(example):
    config = example.make_config(example.parse_args(["--class", "cat"]))
    assert config.d_options == {"seed": 1, "downsample": "conv4"}
    assert convs(build(config.model, "D", **config.d_options)) == convs(dcgan_discriminator(seed=1, downsample="conv4"))
    config = example.make_config(example.parse_args(["--class", "cat", "--downsample", "conv3"]))
    assert config.d_options == {"seed": 1}


def test_downsample_option_goes_into_d_options(example):
    config = example.make_config(example.parse_args(["--downsample", "conv4", "--seed", "5", "--class", "cat"]))
    assert config.d_options == {"seed": 6, "downsample": "conv4"}
    assert set(DOWNSAMPLES) == {"conv3", "conv4"}


def test_checkpoint_round_trip_and_resume(tmp_path):
    data = tmp_path / "cifar"
    write_cifar_folder(data, per_batch=20, rng=np.random.default_rng(0))
    out = tmp_path / "run"
    common = ["--data-dir", str(data), "--batch-size", "5", "--no-progress", "--class", "cat"]
    common += ["--recipe", "original"]  # whose D is the 3x3 one: the option is what changes it
    first = run_cifar(*common, "--epochs", "1", "--downsample", "conv4", "--out", str(out), cache=tmp_path / "c")
    assert first.returncode == 0, first.stderr
    assert "Total params: 461,345" in first.stdout
    assert json.loads((out / "config.json").read_text())["d_options"] == {"seed": 1, "downsample": "conv4"}

    # --resume keeps it: another value is refused in one line, the same one (or none) is accepted and D's 4x4
    # weights load into a 4x4 D.
    refused = run_cifar("--resume", str(out), "--downsample", "conv3", "--epochs", "2", cache=tmp_path / "c")
    assert refused.returncode == 1
    assert f"error: --downsample: {out} was trained with conv4, received conv3" in refused.stderr
    resumed = run_cifar("--resume", str(out), "--epochs", "2", cache=tmp_path / "c")
    assert resumed.returncode == 0, resumed.stderr
    assert read_meta(out)["epoch"] == 2
    assert json.loads((out / "config.json").read_text())["d_options"] == {"seed": 1, "downsample": "conv4"}
