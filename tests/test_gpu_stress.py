"""Capture tests in a loop beside a GPU load (issue 13, part 7).

``test_kernel_ops_switch_to_the_ctypes_gemm_while_capturing`` once failed with every output wrong while
four training processes shared the GPU. The cause was the test's own ordering: inputs uploaded on the
legacy stream were read by kernels on a non-blocking stream that did not wait for the copy
(tests/gpu_streams.py). Here the same eager-versus-captured comparison runs many times on fresh,
larger uploads while other processes keep the GPU's compute and copy engines busy, so a missing
ordering between streams shows up as a wrong result instead of passing by luck.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np
import pytest

cp = pytest.importorskip("cupy")
from gpu_streams import capture_stream  # noqa: E402  (needs CuPy)

pytestmark = [pytest.mark.gpu, pytest.mark.slow]

# A training-like load: large GEMMs and pageable uploads and downloads, until the deadline.
LOAD = """
import sys, time
import cupy as cp, numpy as np
a = cp.random.standard_normal((3072, 3072), dtype=cp.float32) / 60
b = cp.empty_like(a)
host = np.random.standard_normal(8 << 20).astype(np.float32)
print("ready", flush=True)
end = time.time() + float(sys.argv[1])
while time.time() < end:
    for _ in range(8):
        cp.matmul(a, a, out=b)
        cp.matmul(b, a, out=b)
    cp.asnumpy(cp.asarray(host))
"""


def eager_vs_captured(K, rng: np.random.Generator, make_stream: Callable[[], object]) -> float:
    """Fresh uploads, then conv -> relu -> dense eagerly and as a replayed graph on ``make_stream()``;
    returns the largest absolute difference of the two outputs."""
    n, c, h, w = 32, 16, 16, 16
    x = cp.asarray(rng.standard_normal((n, c, h, w)).astype(np.float32))
    W = cp.asarray(rng.standard_normal((8, c, 3, 3)).astype(np.float32) * 0.1)
    b = cp.asarray(rng.standard_normal(8).astype(np.float32))
    Wd = cp.asarray(rng.standard_normal((8 * h * w, 7)).astype(np.float32) * 0.05)
    bd = cp.asarray(rng.standard_normal(7).astype(np.float32))
    stream = make_stream()
    with stream:
        K.cublas.bind_stream(stream)
        y_eager, _ = K.conv2d_forward(x, W, b, (1, 1), (1, 1))
        out_eager = K.dense_forward(K.relu_forward(y_eager).reshape(n, -1), Wd, bd)
        stream.synchronize()
        stream.begin_capture()
        y, _ = K.conv2d_forward(x, W, b, (1, 1), (1, 1))
        out = K.dense_forward(K.relu_forward(y).reshape(n, -1), Wd, bd)
        graph = stream.end_capture()
        graph.launch(stream)
        stream.synchronize()
    return float(np.abs(cp.asnumpy(out) - cp.asnumpy(out_eager)).max())


@pytest.fixture
def gpu_load():
    """Two processes keeping the GPU busy for the length of the test."""
    procs = [subprocess.Popen([sys.executable, "-c", LOAD, "120"], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready", "the GPU load process did not start"
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_capture_replays_like_eager_in_a_loop_beside_a_gpu_load(gpu_load):
    import tinygan.kernels.gpu as K

    rng = np.random.default_rng(7)
    deadline = time.monotonic() + 20
    errors = []
    while time.monotonic() < deadline and len(errors) < 200:
        errors.append(eager_vs_captured(K, rng, capture_stream))
    assert len(errors) >= 20, f"only {len(errors)} rounds ran"
    assert max(errors) < 1e-4, f"{sum(e >= 1e-4 for e in errors)} of {len(errors)} rounds differ: max {max(errors)}"
