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

    # Running a kernel compiles it and caches the machine code: in the user's cache, never inside the
    # installed package (pip's uninstall would leave that folder behind, and a later editable install
    # would import it as an empty namespace package).
    cache_home = tmp_path / "xdg-cache"
    code = "import numpy as np, tinygan.kernels.cpu as k; print(k.relu_forward(np.ones(3, np.float32)))"
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin", "XDG_CACHE_HOME": str(cache_home), "HOME": str(tmp_path)}
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert not [p for p in package.rglob("*") if p.suffix in (".nbi", ".nbc")], "Numba cache written into the package"
    assert list((cache_home / "tinygan" / "numba").rglob("*.nbi")), "Numba cache not in the user cache folder"


def test_numba_cache_folder_follows_numba_cache_dir_then_xdg_then_temp(tmp_path, monkeypatch):
    from tinygan.kernels.cpu._cache import cache_dir

    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "numba"))
    assert cache_dir() is None  # Numba reads its own variable
    monkeypatch.delenv("NUMBA_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "tinygan" / "numba"
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would go")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    assert cache_dir().parent == tmp_path / "tmp"
