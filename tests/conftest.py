import os
from pathlib import Path

import numpy as np
import pytest

from tinygan.backend import gpu_unavailable_reason

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="module")
def K():
    """The GPU kernel set (tinygan.kernels.gpu), for the GPU tests; they skip where CuPy is missing."""
    pytest.importorskip("cupy")
    import tinygan.kernels.gpu as gpu

    return gpu


@pytest.fixture
def shared_data():
    """The genuine data beside the checkout (read-only), or a skip saying why not."""
    path = Path(os.environ.get("TINYGAN_SHARED_DATA", SHARED_DATA))
    if not path.is_dir():
        pytest.skip(f"genuine data folder {path} not present")
    return path


def pytest_collection_modifyitems(config, items):
    reason = None
    for item in items:
        if "gpu" in item.keywords:
            reason = reason or gpu_unavailable_reason() or ""
            if reason:
                item.add_marker(pytest.mark.skip(reason=f"GPU test: {reason}"))


@pytest.fixture(params=["reference", "numba"])
def cpu_kernels(request):
    """Run the test once with each CPU kernel set."""
    from tinygan.backend import get_cpu_kernels, set_cpu_kernels

    old = get_cpu_kernels()
    set_cpu_kernels(request.param)
    yield request.param
    set_cpu_kernels(old)


@pytest.fixture(params=["one thread", "all threads"])
def numba_threads(request, monkeypatch):
    """Small arrays run the Numba kernels on one thread; "all threads" drops the size thresholds
    so that the test arrays take the multi-threaded path as well."""
    import numba
    import tinygan.kernels.cpu.activation as numba_activation

    if request.param == "all threads":
        if numba.get_num_threads() < 2:
            pytest.skip("Numba has a single thread here")
        monkeypatch.setattr(numba_activation, "PARALLEL_MIN_SIZE", dict.fromkeys(numba_activation.PARALLEL_MIN_SIZE, 0))
    return request.param
