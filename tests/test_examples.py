"""The examples as a user runs them: a short run, the sampler, Ctrl-C and resume, --device gpu without a GPU."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from formats import write_cifar_folder, write_idx

from tinygan.backend import gpu_unavailable_reason

ROOT = Path(__file__).resolve().parents[1]
MNIST_EXAMPLE = ROOT / "examples" / "mnist_dense.py"
CIFAR_EXAMPLE = ROOT / "examples" / "cifar_dcgan.py"


@pytest.fixture
def tiny_mnist(tmp_path):
    """A real-format MNIST folder: the four IDX files, 200 training and 50 test images of noisy strokes."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "mnist"
    folder.mkdir()
    for prefix, n in (("train", 200), ("t10k", 50)):
        images = np.zeros((n, 28, 28), np.uint8)
        images[:, 6:22, 12:16] = rng.integers(150, 256, size=(n, 16, 4))
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    return folder


def run_example(*args, cache, script=MNIST_EXAMPLE):
    env = {**os.environ, "TINYGAN_DATA": str(cache)}
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, env=env, timeout=300)


def test_short_example_run_and_sampler(tmp_path, tiny_mnist):
    out = tmp_path / "run"
    result = run_example(
        "--data-dir", str(tiny_mnist), "--epochs", "2", "--batch-size", "50", "--no-progress", "--out", str(out),
        cache=tmp_path / "cache",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "250 images, 5 steps per epoch" in result.stdout
    assert "Total params: 1,486,352" in result.stdout and "Total params: 1,460,225" in result.stdout
    assert "epoch 2/2" in result.stdout
    for name in ("checkpoint.npz", "samples.gif", "losses.png", "metrics.csv", "config.json", "grad_norms.png"):
        assert (out / name).is_file(), name

    sampled = subprocess.run(
        [sys.executable, "-m", "tinygan.sample", str(out / "checkpoint.npz"), "--n", "30",
         "--out", str(tmp_path / "s.npy"), "--grid", str(tmp_path / "g.png")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert sampled.returncode == 0, sampled.stderr
    images = np.load(tmp_path / "s.npy")
    assert images.shape == (30, 28, 28) and images.dtype == np.float32
    assert (tmp_path / "g.png").is_file()

    again = run_example("--data-dir", str(tiny_mnist), "--out", str(out), cache=tmp_path / "cache")
    assert again.returncode == 1 and "already holds a run" in again.stderr


def test_ctrl_c_saves_and_resume_finishes(tmp_path, tiny_mnist):
    out = tmp_path / "run"
    args = ["--data-dir", str(tiny_mnist), "--epochs", "40", "--batch-size", "25", "--no-progress", "--out", str(out)]
    env = {**os.environ, "TINYGAN_DATA": str(tmp_path / "cache"), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(MNIST_EXAMPLE), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    deadline = time.time() + 240
    for line in proc.stdout:
        if line.startswith("epoch 1/40") or time.time() > deadline:
            break
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "saved" in stdout and "--resume" in stdout
    assert (out / "checkpoint.npz").is_file()

    resumed = run_example("--resume", str(out), "--epochs", "2", "--no-progress", cache=tmp_path / "cache")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stdout and "epoch 2/2" in resumed.stdout


@pytest.mark.skipif(gpu_unavailable_reason() is None, reason="a GPU is present: this checks the no-GPU message")
def test_device_gpu_without_gpu_is_one_clear_line(tmp_path):
    result = run_example("--device", "gpu", cache=tmp_path / "cache")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--device gpu needs a CUDA GPU" in lines[0]


def test_help_lists_the_options():
    result = subprocess.run([sys.executable, str(MNIST_EXAMPLE), "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for option in ("--device", "--epochs", "--recipe", "--batch-size", "--lr", "--seed", "--data-dir", "--out",
                   "--resume", "--sample-every", "--activation", "--output", "--limit", "--g-loss"):  # fmt: skip
        assert option in result.stdout, option


def test_cifar_per_class_run_resume_and_overview(tmp_path):
    data = tmp_path / "cifar"
    write_cifar_folder(data, per_batch=20, rng=np.random.default_rng(0))  # 10 training images per class
    out = tmp_path / "run"
    common = ["--data-dir", str(data), "--batch-size", "5", "--no-progress", "--instance-noise", "0.1"]
    first = run_example(*common, "--class", "all", "--epochs", "1", "--out", str(out), "--limit", "10",
                        cache=tmp_path / "cache", script=CIFAR_EXAMPLE)  # fmt: skip
    assert first.returncode == 0, first.stderr
    assert "Total params: 826,883" in first.stdout and "Total params: 260,641" in first.stdout
    assert (out / "overview.png").is_file()
    for name in ("airplane", "truck"):
        assert (out / name / "checkpoint.npz").is_file()
    resumed = run_example("--resume", str(out), cache=tmp_path / "cache", script=CIFAR_EXAMPLE)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.count("already trained, skipping") == 10

    images = np.load(_sample(out / "cat" / "checkpoint.npz", tmp_path / "cat.npy", 4))
    assert images.shape == (4, 32, 32, 3) and 0 <= images.min() and images.max() <= 1


def _sample(checkpoint, out, n):
    result = subprocess.run(
        [sys.executable, "-m", "tinygan.sample", str(checkpoint), "--n", str(n), "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return out
