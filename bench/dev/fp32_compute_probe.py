"""Probe: is there a faster product at FP32 accuracy than cuBLAS's FP32 GEMM on this card (issue 11's fp32
targets, which the FP32 GEMMs bound)? cuBLAS's compute types on the DCGAN's and the MNIST GAN's GEMM shapes:
68 (CUBLAS_COMPUTE_32F), 78 (CUBLAS_COMPUTE_32F_EMULATED_16BFX9: FP32 emulated with three-way split BF16
products, CUDA 12.9+) and 77 (CUBLAS_COMPUTE_32F_FAST_TF32, for scale); the median of 7 rounds of 20 calls and
the relative error against a float64 product.

    python -m bench.dev.fp32_compute_probe      # needs CuPy and a GPU

The compute type is chosen by swapping the entry of ``cublas.COMPUTE_TYPES`` that precision "fp32" reads, for
the probe's own calls only (restored after each shape).
"""

import ctypes
import statistics
import sys

import numpy as np

from bench.harness import gpu_missing

# (m, k, n, transa, transb, what): the product op(a) (m x k) @ op(b) (k x n)
SHAPES = [
    (128, 576, 65536, False, False, "D conv2 forward W @ cols"),
    (576, 128, 65536, True, False, "D conv2 dcols W^T @ dz"),
    (128, 65536, 576, False, True, "D conv2 dW dz @ cols^T"),
    (128, 1152, 16384, False, False, "D conv3 forward W @ cols"),
    (125, 784, 1024, False, False, "MNIST D dense1 forward x @ W"),
    (1024, 125, 784, True, False, "MNIST dW x^T @ dy"),
]
COMPUTE_TYPES = (68, 78, 77)  # 32F, 32F_EMULATED_16BFX9, 32F_FAST_TF32


def main() -> int:
    if gpu_missing("fp32_compute_probe"):
        return 2
    import cupy as cp
    from tinygan.kernels.gpu import cublas

    version = ctypes.c_int()
    cublas.library().cublasGetVersion_v2(cublas._handle().ptr, ctypes.byref(version))
    print("cuBLAS version:", version.value)
    rng = np.random.default_rng(0)
    for m, k, n, ta, tb, what in SHAPES:
        a = cp.asarray(rng.standard_normal((k, m) if ta else (m, k)), dtype=cp.float32)
        b = cp.asarray(rng.standard_normal((n, k) if tb else (k, n)), dtype=cp.float32)
        a64, b64 = a.astype(cp.float64), b.astype(cp.float64)
        ref = (a64.T if ta else a64) @ (b64.T if tb else b64)
        row = [what]
        for compute in COMPUTE_TYPES:
            cublas.COMPUTE_TYPES["fp32"] = compute
            try:
                out = cublas.matmul(a, b, transa=ta, transb=tb, precision="fp32")
                err = float(cp.abs(out - ref).max() / cp.abs(ref).max())
                start, end = cp.cuda.Event(), cp.cuda.Event()
                times = []
                for _ in range(7):
                    start.record()
                    for _ in range(20):
                        cublas.matmul(a, b, out=out, transa=ta, transb=tb, precision="fp32")
                    end.record()
                    end.synchronize()
                    times.append(cp.cuda.get_elapsed_time(start, end) * 1e3 / 20)
                t = statistics.median(times)
                row.append(f"ct{compute}: {t:8.1f} us {2 * m * n * k / t / 1e6:6.1f} TFLOP/s err {err:.1e}")
            except Exception as exc:  # a compute type this card or cuBLAS refuses: say so, go on
                row.append(f"ct{compute}: FAILED {str(exc)[:80]}")
            finally:
                cublas.COMPUTE_TYPES["fp32"] = 68
        print(" | ".join(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
