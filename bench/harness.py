"""Timing, validation and machine description shared by the report and the pytest-benchmark suites.

Timing follows one rule per device:

* CPU: ``time.perf_counter`` around ``number`` back-to-back calls, repeated; the statistics are over
  the per-call time of each repeat.
* GPU: CUDA events recorded on the stream before and after ``number`` calls, after warm-up. A host
  clock around asynchronous launches would time the launches, not the work.

Validation compares an implementation's outputs, computed in float32 from the same inputs, with the
reference kernels run in float64 on those inputs; the error is ``max|got - want| / max|want|`` per
output array (scale-free, so one tolerance serves a bias gradient and a 3200-term convolution sum).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def gpu_missing(script: str) -> bool:
    """Whether there is no CUDA GPU here; if so, say in one line that ``script`` needs one and why (the caller
    then exits with status 2, as every GPU-only script in bench/ does)."""
    from tinygan.backend import gpu_unavailable_reason

    reason = gpu_unavailable_reason()
    if reason:
        print(f"{script} needs a CUDA GPU: {reason}", file=sys.stderr)
    return reason is not None


def torch_installed() -> bool:
    """Whether PyTorch, the optional reference, is installed here (looked up, not imported)."""
    return importlib.util.find_spec("torch") is not None


DEFAULT_TOLERANCE = 1e-4


# -- statistics ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Stats:
    """Seconds per call over ``len(samples)`` repeats of ``number`` calls each; ``others_cpu`` is the share of
    the machine's cores that other processes used meanwhile (None where unknown)."""

    samples: list[float]
    number: int
    others_cpu: float | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def q1(self) -> float:
        return float(np.percentile(self.samples, 25))

    @property
    def q3(self) -> float:
        return float(np.percentile(self.samples, 75))

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1

    @property
    def min(self) -> float:
        return min(self.samples)

    def as_dict(self) -> dict[str, Any]:
        return {
            "median_s": self.median,
            "q1_s": self.q1,
            "q3_s": self.q3,
            "min_s": self.min,
            "repeats": len(self.samples),
            "number": self.number,
            "others_cpu": self.others_cpu,
        }


# -- other people's work on the same cores --------------------------------------------------------------------


class Contention:
    """The share of all cores that *other* processes used over an interval: the machine's busy time
    (/proc/stat, steal included) minus this process's own CPU time, over wall time x cores. The load
    average cannot tell this apart, since it counts the benchmark's own threads."""

    def __init__(self) -> None:
        self.t0 = self._sample()

    @staticmethod
    def _busy() -> float | None:
        try:
            with open("/proc/stat") as f:
                fields = [float(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        # user nice system idle iowait irq softirq steal ...
        busy = fields[0] + fields[1] + fields[2] + fields[5] + fields[6] + (fields[7] if len(fields) > 7 else 0)
        return busy / os.sysconf("SC_CLK_TCK")

    def _sample(self) -> tuple[float, float | None, float]:
        t = os.times()
        return time.monotonic(), self._busy(), t.user + t.system

    def others(self) -> float | None:
        wall1, busy1, own1 = self._sample()
        wall0, busy0, own0 = self.t0
        if busy0 is None or busy1 is None or wall1 - wall0 < 0.05:
            return None
        share = ((busy1 - busy0) - (own1 - own0)) / ((wall1 - wall0) * usable_cores())
        return min(1.0, max(0.0, share))


# -- timers -------------------------------------------------------------------------------------------------


class CpuTimer:
    name = "perf_counter"
    target_sample_s = 2e-3  # calls per repeat are batched up to this, so the clock's overhead vanishes

    def sync(self, stream: Any = None) -> None:
        pass

    def block(self, fn: Callable[[], Any], number: int, stream: Any = None) -> float:
        start = time.perf_counter()
        for _ in range(number):
            fn()
        return time.perf_counter() - start


class CupyTimer:
    name = "CUDA events (CuPy)"
    target_sample_s = 1e-3

    def __init__(self) -> None:
        import cupy

        self.cupy = cupy
        self.start = cupy.cuda.Event()
        self.end = cupy.cuda.Event()

    def sync(self, stream: Any = None) -> None:
        (stream or self.cupy.cuda.get_current_stream()).synchronize()

    def block(self, fn: Callable[[], Any], number: int, stream: Any = None) -> float:
        """``stream``: where ``fn`` launches its work, if not on the current stream (a trainer's own stream
        that does not wait for the default one)."""
        stream = stream or self.cupy.cuda.get_current_stream()
        self.start.record(stream)
        for _ in range(number):
            fn()
        self.end.record(stream)
        self.end.synchronize()
        return self.cupy.cuda.get_elapsed_time(self.start, self.end) / 1e3


class TorchCudaTimer:
    name = "CUDA events (torch)"
    target_sample_s = 1e-3

    def __init__(self) -> None:
        import torch

        self.torch = torch
        self.start = torch.cuda.Event(enable_timing=True)
        self.end = torch.cuda.Event(enable_timing=True)

    def sync(self, stream: Any = None) -> None:
        self.torch.cuda.synchronize()

    def block(self, fn: Callable[[], Any], number: int, stream: Any = None) -> float:
        self.start.record()
        for _ in range(number):
            fn()
        self.end.record()
        self.end.synchronize()
        return self.start.elapsed_time(self.end) / 1e3


def timer_for(impl: str, device: str) -> Any:
    """The timer that fits an implementation: ``impl`` "gpu" is CuPy, "torch" on "gpu" is torch.cuda."""
    if device == "gpu":
        return TorchCudaTimer() if impl.startswith("torch") else CupyTimer()
    return CpuTimer()


def measure(
    fn: Callable[[], Any],
    timer: Any,
    budget_s: float = 0.5,
    min_repeats: int = 5,
    max_repeats: int = 200,
    warmup: int = 2,
    stream: Any = None,
) -> Stats:
    """Median-ready samples of ``fn``'s time per call: warm-up calls, then repeats until both
    ``min_repeats`` and ``budget_s`` are reached (or ``max_repeats``)."""
    for _ in range(warmup):
        fn()
    timer.sync(stream)
    one = timer.block(fn, 1, stream)
    number = max(1, min(1000, int(timer.target_sample_s / max(one, 1e-9))))
    samples: list[float] = []
    contention = Contention()
    deadline = time.perf_counter() + budget_s
    while len(samples) < max_repeats and (len(samples) < min_repeats or time.perf_counter() < deadline):
        samples.append(timer.block(fn, number, stream) / number)
    return Stats(samples, number, contention.others())


BUSY = 0.15  # others' share of the cores above which a CPU measurement is retried, then flagged


def measure_quietly(fn: Callable[[], Any], timer: Any, retries: int = 1, **kwargs: Any) -> Stats:
    """``measure``, repeated (after a pause) while other processes took more than BUSY of the cores;
    the least disturbed result is kept. GPU timings are not retried: the host's load barely moves them."""
    best = measure(fn, timer, **kwargs)
    for _ in range(retries if isinstance(timer, CpuTimer) else 0):
        if best.others_cpu is None or best.others_cpu <= BUSY:
            break
        time.sleep(3)
        again = measure(fn, timer, **{**kwargs, "warmup": 1})
        if again.others_cpu is not None and again.others_cpu < best.others_cpu:
            best = again
    return best


# -- validation ---------------------------------------------------------------------------------------------


def to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch
        return x.detach().cpu().numpy()
    if type(x).__module__.startswith("cupy"):
        return x.get()
    return np.asarray(x)


def relative_error(got: Any, want: Any, floor: float = 0.0) -> float:
    """``max|got - want| / max(max|want|, floor)`` (absolute when both are 0); inf on a shape mismatch or NaN."""
    got = to_numpy(got).astype(np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        return float("inf")
    if got.size == 0:
        return 0.0
    diff = float(np.max(np.abs(got - want)))
    if not np.isfinite(diff):
        return float("inf")
    scale = max(float(np.max(np.abs(want))), floor)
    return diff / scale if scale > 0 else diff


def compare(
    got: Sequence[Any], want: Sequence[Any], tolerance: float | Sequence[float], floor: float = 0.0
) -> tuple[bool, float, str]:
    """(ok, worst relative error, text naming the worst output) for outputs given in the same order;
    ``floor`` is the smallest scale an error is measured against (for outputs that should be 0)."""
    if len(got) != len(want):
        return False, float("inf"), f"{len(got)} outputs, expected {len(want)}"
    tolerances = [tolerance] * len(want) if isinstance(tolerance, (int, float)) else list(tolerance)
    worst, worst_i, ok = 0.0, 0, True
    for i, (g, w, tol) in enumerate(zip(got, want, tolerances)):
        err = relative_error(g, w, floor)
        if err > tol:
            ok = False
        if err > worst or not np.isfinite(err):
            worst, worst_i = err, i
    return ok, worst, f"output {worst_i}: relative error {worst:.2e}"


# -- the machine --------------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    return [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if f in have]
    except OSError:
        pass
    return []


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def memory_gib() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def load_average() -> tuple[float, float, float] | None:
    try:
        return os.getloadavg()
    except OSError:
        return None


def blas_info() -> list[dict[str, Any]]:
    """Which BLAS NumPy (and anything else loaded) runs, with the kernel it picked: threadpoolctl where
    installed. OPENBLAS_CORETYPE forces an older kernel (see the report's machine section)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keep = ("user_api", "internal_api", "version", "architecture", "num_threads", "threading_layer")
    return [{k: info.get(k) for k in keep if info.get(k) is not None} for info in threadpool_info()]


def numpy_blas_summary() -> str:
    infos = [i for i in blas_info() if i.get("user_api") == "blas"]
    if infos:
        i = infos[0]
        return (
            f"{i.get('internal_api')} {i.get('version')}, kernel {i.get('architecture', '?')}, "
            f"{i.get('num_threads')} threads"
        )
    try:  # without threadpoolctl: NumPy's build configuration
        cfg = np.show_config(mode="dicts")
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        return f"{blas.get('name', '?')} {blas.get('version', '')} (threadpoolctl not installed: kernel unknown)"
    except Exception:
        return "unknown (threadpoolctl not installed)"


def cpu_machine() -> dict[str, Any]:
    import numba

    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": usable_cores(),
        "flags": cpu_flags(),
        "memory_gib": memory_gib(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numpy_blas": numpy_blas_summary(),
        "openblas_env": {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ},
        "numba": numba.__version__,
        "numba_threads": numba.config.NUMBA_NUM_THREADS,
    }
    try:
        import torch

        info["torch"] = torch.__version__
    except ImportError:
        info["torch"] = None
    return info


def gpu_machine() -> dict[str, Any]:
    import cupy

    props = cupy.cuda.runtime.getDeviceProperties(0)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    info = {
        "gpu": name,
        "gpu_memory_gib": props["totalGlobalMem"] / 2**30,
        "compute_capability": f"{props['major']}.{props['minor']}",
        "sm_count": props["multiProcessorCount"],
        "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion(),
        "cuda_driver": cupy.cuda.runtime.driverGetVersion(),
        "cupy": cupy.__version__,
        "host_cpu": cpu_model(),
        "cores": usable_cores(),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_cuda"] = torch.version.cuda
    except ImportError:
        info["torch"] = None
    return info


def slug(text: str) -> str:
    text = re.sub(r"\(r\)|\(tm\)|\bcpu\b|@.*$|processor|\d+-core", "", text.lower())
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-") or "machine"


# -- the machine's own peak ---------------------------------------------------------------------------------


def measure_peak(device: str, quick: bool = False) -> dict[str, Any]:
    """Best-of GFLOP/s of a large float32 GEMM and GB/s of a large copy (read + write), measured here:
    the denominators of every "% of peak" in the report."""
    if device == "gpu":
        import cupy as xp

        timer: Any = CupyTimer()
        n, copy_bytes = 8192, 2**30
    else:
        xp = np
        timer = CpuTimer()
        n, copy_bytes = 2048, 2**28
    rng = np.random.default_rng(0)
    a = xp.asarray(rng.standard_normal((n, n), dtype=np.float32))
    b = xp.asarray(rng.standard_normal((n, n), dtype=np.float32))
    out = xp.empty((n, n), dtype=np.float32)
    gemm = measure(lambda: xp.matmul(a, b, out=out), timer, budget_s=0.5 if quick else 1.5, min_repeats=3, warmup=1)
    src = xp.ones(copy_bytes // 4, dtype=np.float32)
    dst = xp.empty_like(src)
    copy = measure(lambda: xp.copyto(dst, src), timer, budget_s=0.5 if quick else 1.5, min_repeats=3, warmup=1)
    return {
        "gemm_n": n,
        "gemm_gflops": 2 * n**3 / gemm.min / 1e9,
        "gemm_gflops_median": 2 * n**3 / gemm.median / 1e9,
        "copy_bytes": copy_bytes,
        "copy_gbs": 2 * copy_bytes / copy.min / 1e9,
        "copy_gbs_median": 2 * copy_bytes / copy.median / 1e9,
        "others_cpu": max(v for v in (gemm.others_cpu, copy.others_cpu, 0.0) if v is not None),
        "gemm_by": "CuPy (cuBLAS, FP32, no TF32)" if device == "gpu" else "NumPy (its BLAS, all threads)",
        "copy_by": "cupy.copyto" if device == "gpu" else "numpy.copyto (one thread)",
    }
