"""The example scripts as the tests use them: imported as modules (to call their parse_args and make_config), or
run as a user runs them, in a fresh interpreter with their own data cache."""

import functools
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MNIST_EXAMPLE = ROOT / "examples" / "mnist_dense.py"
CIFAR_EXAMPLE = ROOT / "examples" / "cifar_dcgan.py"


def load_example(path: Path):
    """The script at ``path`` as a module (not registered in sys.modules)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_example(*args: str, cache: Path, script: Path = MNIST_EXAMPLE) -> subprocess.CompletedProcess:
    """``python SCRIPT ARGS`` with TINYGAN_DATA at ``cache``; its output captured."""
    env = {**os.environ, "TINYGAN_DATA": str(cache)}
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, env=env, timeout=300)


run_cifar = functools.partial(run_example, script=CIFAR_EXAMPLE)
