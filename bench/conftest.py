"""pytest-benchmark suites over the same cases as bench/report.py: ``bench_*.py`` files, collected only when
bench/ is named on the command line (setup.cfg's testpaths keeps the default test run to tests/)::

    python -m pytest bench/ --benchmark-only                      # every kernel and step, every implementation
    python -m pytest bench/bench_steps.py --benchmark-only --bench-device cpu --bench-impls numba,torch
    python -m pytest bench/ --benchmark-only -k "dcgan and conv"  # a subset

An implementation that fails validation fails its test and is not timed. All implementations share this
one process here; bench/report.py gives each its own process (cleaner numbers, CUDA-event GPU timings).
"""

from __future__ import annotations

import importlib.util

import pytest

# Numba's kernels set OMP_WAIT_POLICY=PASSIVE on import; loading them before PyTorch lets both OpenMP pools
# in this one process sleep between parallel regions instead of spinning against each other.
import tinygan.kernels.cpu  # noqa: E402,F401


def pytest_collect_file(file_path, parent):
    if file_path.suffix == ".py" and file_path.name.startswith("bench_"):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


def pytest_addoption(parser):
    group = parser.getgroup("tinygan benchmarks")
    group.addoption("--bench-device", choices=("cpu", "gpu", "all"), default="all", help="default: all present")
    group.addoption("--bench-impls", default=None, help="comma list of reference, numba, gpu, torch (default: all)")


@pytest.fixture
def selected(request):
    """skip(device, impl) unless this run asked for it and it is present here."""
    device_opt = request.config.getoption("--bench-device")
    impls_opt = request.config.getoption("--bench-impls")

    def check(device: str, impl: str) -> None:
        if device_opt != "all" and device != device_opt:
            pytest.skip(f"--bench-device {device_opt}")
        if impls_opt and impl not in impls_opt.split(","):
            pytest.skip(f"--bench-impls {impls_opt}")
        if device == "gpu":
            from tinygan.backend import gpu_unavailable_reason

            reason = gpu_unavailable_reason()
            if reason:
                pytest.skip(f"GPU: {reason}")
        if impl == "torch":
            if importlib.util.find_spec("torch") is None:
                pytest.skip("PyTorch is not installed (an optional comparison)")
            if device == "gpu":
                import torch

                if not torch.cuda.is_available():
                    pytest.skip("PyTorch has no CUDA device")

    return check
