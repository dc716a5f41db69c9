"""Where an eager Dense forward's host time goes (thirteenth session): the layer's kernel call, dense_gemm, the
bare kernel launch with the same arguments, and their parts, each timed as host microseconds per call over
5,000 calls (the device is not waited for inside the loop), then a cProfile of the layer's call.

    python -m bench.dev.dense_eager_probe        # needs CuPy and a Hopper GPU (dense_gemm's split kernels)

Why: the benchmark report times each kernel eagerly, and a Dense forward there costs about 46 µs against
PyTorch's 33 (bench/results/nvidia-h200-2026-12-03.md), while the whole training step runs as one CUDA graph
and pays none of it.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import time
from collections.abc import Callable

from bench.harness import gpu_missing


def per_call_us(fn: Callable[[], object], n: int = 5000) -> float:
    import cupy

    for _ in range(50):
        fn()
    cupy.cuda.Device().synchronize()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    host = (time.perf_counter() - start) / n * 1e6
    cupy.cuda.Device().synchronize()
    return host


def main() -> int:

    if gpu_missing("dense_eager_probe"):
        return 2
    import cupy
    import numpy as np
    import tinygan.kernels.gpu as K
    from tinygan.kernels.gpu import dense
    from tinygan.kernels.gpu import dense_gemm as dg
    from tinygan.kernels.gpu.layout import act_args

    f32 = np.float32
    x, W, b = cupy.ones((125, 256), f32), cupy.ones((256, 512), f32), cupy.ones(512, f32)
    dy, dW, db = cupy.ones((125, 512), f32), cupy.zeros((256, 512), f32), cupy.zeros(512, f32)
    kernel = dg.module(1, 0, True).get(dg.kernel_name(8, 0, 0, 1, 0))
    out = cupy.empty((125, 512), f32)
    i32 = np.int32
    args = (
        x,
        W,
        b,
        i32(1),
        out,
        i32(125),
        i32(512),
        i32(256),
        i32(256),
        i32(512),
        i32(32),
        *act_args(f32, 0.2),
        i32(0),
    )
    rows = [
        ("K.dense_forward (the plan: dense_gemm)", lambda: K.dense_forward(x, W, b, slope=0.2)),
        ("dense_gemm(...)", lambda: dg.dense_gemm(x, W, bias=b, slope=0.2, pipeline="async")),
        ("the bare kernel launch, same arguments", lambda: kernel((8, 4, 8), (128,), args)),
        ("cupy.empty", lambda: cupy.empty((125, 512), f32)),
        ("dense._plan", lambda: dense._plan("forward", 125, 512, 256, x, W)),
        ("dense_gemm.device_capability()", dg.device_capability),
        ("K.dense_backward (rows_grad_sum, two products, two streams)",
         lambda: K.dense_backward(dy, x, W, y=dy, slope=0.2, dW=dW, db=db)),
        ("cupy.matmul 125 x 256 x 512", lambda: cupy.matmul(x, W)),
    ]  # fmt: skip
    for name, fn in rows:
        print(f"{name:62s} {per_call_us(fn):7.2f} us host per call")
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(3000):
        K.dense_forward(x, W, b, slope=0.2)
    profile.disable()
    cupy.cuda.Device().synchronize()
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(15)
    print(text.getvalue())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
