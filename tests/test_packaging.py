"""kernels/ installs as tinygan.kernels: a regular (non-editable) install must carry it, the embedded
MNIST files and the CUDA sources, and import from outside the checkout."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_regular_install_carries_kernels_data_and_cuda_sources(tmp_path):
    target = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(target), str(ROOT)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr[-2000:]
    package = target / "tinygan"
    for relative in ("kernels/reference/conv2d.py", "kernels/cpu/__init__.py", "kernels/gpu/conv2d.cu",
                     "data/embedded/t10k-images-idx3-ubyte.gz", "data/embedded/t10k-labels-idx1-ubyte.gz"):  # fmt: skip
        assert (package / relative).is_file(), relative
    assert not (target / "kernels").exists(), "kernels/ must not install as a top-level package"
    probe = subprocess.run(
        [sys.executable, "-c", "import tinygan.kernels.cpu as k, tinygan; print(k.__file__); print(tinygan.Conv2d)"],
        capture_output=True, text=True, cwd=tmp_path, env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        timeout=300,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr[-2000:]
    assert str(package / "kernels" / "cpu") in probe.stdout
