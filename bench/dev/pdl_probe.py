"""What programmatic dependent launch (PDL, Hopper) would save between the kernels of a captured step (fourteenth
session).

A CUDA graph still pays, between two dependent kernels, the first one's drain and memory flush and the second
one's block launch. With PDL the second kernel is launched with the attribute
``CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION`` and waits for the first with ``griddepcontrol.wait``
inside the kernel, so its blocks can be resident, waiting, while the first one finishes. The MNIST fp32 step is
86 kernels, 0.202 ms of it without the products' arithmetic (bench/results/dense-gemm-2026-12-03.md): if each
dependent pair saves a microsecond, that is a large share of it.

Chains of N dependent kernels, each adding 1 to every element of one array, captured as one graph and replayed;
time per kernel (median of rounds), for:

- ``plain``: CuPy's launch, the kernel without griddepcontrol (today's step);
- ``plain+gdc``: CuPy's launch, the kernel with ``griddepcontrol.wait`` / ``launch_dependents`` (their cost
  without PDL; they are no-ops then);
- ``pdl-early``: cuLaunchKernelEx with the attribute; the kernel waits, then lets its dependent launch at once;
- ``pdl-late``: the same, the dependent let launch only after this kernel's stores;
- ``pdl-implicit``: the attribute, the wait, no launch_dependents (the dependent launches as blocks exit).

Each chain's result is checked (every element == N x replays) before its time counts.

    python -m bench.dev.pdl_probe        # needs CuPy and a GPU of compute capability 9.0
"""

from __future__ import annotations

import ctypes
import statistics
import sys

from bench.harness import gpu_missing

SOURCE = r"""
template <int MODE>  // 0: no griddepcontrol; 1: wait, then launch_dependents; 2: wait, stores, launch_dependents;
                     // 3: wait only
__global__ void bump(float* __restrict__ x, int n, int work) {
    if (MODE != 0) asm volatile("griddepcontrol.wait;" ::: "memory");
    if (MODE == 1) asm volatile("griddepcontrol.launch_dependents;");
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        float v = x[i];
        float t = v;
        for (int r = 0; r < work; ++r) t = fmaf(t, 1.0000001f, 1e-30f);  // a kernel with some arithmetic
        x[i] = v + 1.0f + (t - t);
    }
    if (MODE == 2) asm volatile("griddepcontrol.launch_dependents;");
}
"""

CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION = 6


class _AttrValue(ctypes.Union):
    _fields_ = [("pad", ctypes.c_char * 64), ("i", ctypes.c_int)]


class _Attr(ctypes.Structure):
    _fields_ = [("id", ctypes.c_int), ("_pad", ctypes.c_char * 4), ("value", _AttrValue)]


class _Config(ctypes.Structure):
    _fields_ = [
        ("gridDimX", ctypes.c_uint),
        ("gridDimY", ctypes.c_uint),
        ("gridDimZ", ctypes.c_uint),
        ("blockDimX", ctypes.c_uint),
        ("blockDimY", ctypes.c_uint),
        ("blockDimZ", ctypes.c_uint),
        ("sharedMemBytes", ctypes.c_uint),
        ("hStream", ctypes.c_void_p),
        ("attrs", ctypes.POINTER(_Attr)),
        ("numAttrs", ctypes.c_uint),
    ]


def launch_pdl(cuda, func_ptr: int, grid: int, block: int, stream_ptr: int, args: list) -> None:
    attr = _Attr()
    attr.id = CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION
    attr.value.i = 1
    cfg = _Config(grid, 1, 1, block, 1, 1, 0, stream_ptr, ctypes.pointer(attr), 1)
    params = (ctypes.c_void_p * len(args))(*[ctypes.cast(ctypes.pointer(a), ctypes.c_void_p) for a in args])
    status = cuda.cuLaunchKernelEx(ctypes.byref(cfg), ctypes.c_void_p(func_ptr), params, None)
    if status != 0:
        raise RuntimeError(f"cuLaunchKernelEx failed with CUresult {status}")


def main() -> int:

    if gpu_missing("pdl_probe"):
        return 2
    import cupy
    import numpy as np

    cc = int(cupy.cuda.Device().compute_capability)
    if cc < 90:
        print(f"pdl_probe needs compute capability 9.0 (griddepcontrol); this GPU has {cc / 10}", file=sys.stderr)
        return 2
    cuda = ctypes.CDLL("libcuda.so.1")
    cuda.cuLaunchKernelEx.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    names = [f"bump<{m}>" for m in range(4)]
    module = cupy.RawModule(code=SOURCE, options=("-std=c++17",), name_expressions=names)
    kernels = {m: module.get_function(f"bump<{m}>") for m in range(4)}
    variants = {
        "plain": (0, False),
        "plain+gdc": (1, False),
        "pdl-early": (1, True),
        "pdl-late": (2, True),
        "pdl-implicit": (3, True),
    }
    stream = cupy.cuda.Stream(non_blocking=True)
    print(
        f"GPU: {cupy.cuda.runtime.getDeviceProperties(0)['name'].decode()}, CuPy {cupy.__version__}, "
        f"driver {cupy.cuda.runtime.driverGetVersion()}"
    )
    print("| chain | blocks x threads | work | " + " | ".join(variants) + " |")
    print("| --- | --- | ---: |" + " ---: |" * len(variants))
    for n_elems, block, work in ((256, 256, 0), (250 * 1024, 256, 0), (250 * 1024, 256, 64), (32 * 256, 256, 400)):
        grid = min(8192, -(-n_elems // block))
        row = []
        for mode, pdl in variants.values():
            x = cupy.zeros(n_elems, np.float32)
            chain = 64
            fn = kernels[mode]
            args = [ctypes.c_uint64(x.data.ptr), ctypes.c_int32(n_elems), ctypes.c_int32(work)]
            with stream:
                stream.begin_capture()
                for _ in range(chain):
                    if pdl:
                        launch_pdl(cuda, fn.kernel.ptr, grid, block, stream.ptr, args)
                    else:
                        fn((grid,), (block,), (x, np.int32(n_elems), np.int32(work)))
                graph = stream.end_capture()
            replays, times = 20, []
            start, end = cupy.cuda.Event(), cupy.cuda.Event()
            total = 0
            for _ in range(5):
                graph.launch(stream)
                total += 1
                start.record(stream)
                for _ in range(replays):
                    graph.launch(stream)
                total += replays
                end.record(stream)
                end.synchronize()
                times.append(cupy.cuda.get_elapsed_time(start, end) * 1e3 / (replays * chain))
            got = cupy.asnumpy(x)
            ok = bool(np.all(got == float(chain * total)))
            row.append(f"{statistics.median(times):.2f}" + ("" if ok else " WRONG"))
        print(f"| 64 | {grid} x {block} | {work} | " + " | ".join(row) + " |")
    print("µs per kernel, median of 5 rounds of 20 replays of a 64-kernel graph")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
