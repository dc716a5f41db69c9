"""Where arrays live and which kernels run on them.

tinygan has two devices: ``"cpu"`` (NumPy arrays) and ``"gpu"`` (CuPy arrays).
Every kernel exists in three implementations with identical names and signatures:

* ``tinygan.kernels.reference`` -- plain NumPy, the readable definition;
* ``tinygan.kernels.cpu``       -- Numba-jitted, the default on the CPU;
* ``tinygan.kernels.gpu``       -- hand-written CUDA through CuPy.

A layer asks :func:`kernels_for` for the namespace that matches its input array
and calls ``K.<op>_forward(...)``; nothing else in the layer depends on the device.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import numpy as np

DEVICES = ("cpu", "gpu")
CPU_IMPLEMENTATIONS = ("numba", "reference")

_cpu_impl = os.environ.get("TINYGAN_CPU_KERNELS", "numba")

# How the GPU kernels multiply float32 arrays (float64 arrays are always multiplied in float64):
#   "fp32"  FP32 products: cuBLAS FP32 GEMMs, FP32 FMAs in the implicit-GEMM conv kernels. The default.
#   "tf32"  TF32 tensor cores: operands rounded to 10-bit mantissas, ~1e-3 relative error.
#   "bf16"  BF16 tensor cores: the convolutions form their GEMM operands in bfloat16 (7-bit mantissas, ~1e-2
#           relative error; docs/ARCHITECTURE.md, "Convolutions on the GPU"). Dense layers' float32 GEMMs ask
#           cuBLAS for BF16 compute, which runs its TF32 kernels on float32 arrays: the same as tf32 there.
# Every mode accumulates in FP32 and keeps the arrays (weights, Adam state, activations) in float32.
PRECISIONS = ("fp32", "tf32", "bf16")


def _precision_from_environment() -> str:
    value = os.environ.get("TINYGAN_PRECISION")
    if value is None:
        # TINYGAN_TF32=1, the older switch, stays an alias.
        return "tf32" if os.environ.get("TINYGAN_TF32") == "1" else "fp32"
    if value not in PRECISIONS:
        raise ValueError(f"TINYGAN_PRECISION={value!r} in the environment: expected one of {', '.join(PRECISIONS)}")
    return value


_precision: str | None = None  # read from the environment on first use, so a bad value fails there, not at import


class DeviceError(RuntimeError):
    """The GPU was asked for but cannot be used, or arrays sit on the wrong device."""


def _import_cupy() -> ModuleType | None:
    try:
        import cupy  # noqa: F401
    except Exception:  # ImportError, or a CUDA library that fails to load
        return None
    return cupy


def gpu_unavailable_reason() -> str | None:
    """Why the GPU cannot be used here, or None when it can."""
    cupy = _import_cupy()
    if cupy is None:
        return "CuPy is not installed (pip install 'tinygan[gpu]', see the README)"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # no driver, or a driver too old for this CuPy
        return f"CUDA is not usable: {exc}"
    if count == 0:
        return "no CUDA device found"
    return None


# TF32 and BF16 products run on tensor cores of compute capability 8.0 (Ampere) and newer; fp32 runs anywhere.
TENSOR_CORE_CC = 80


def precision_unavailable_reason(precision: str) -> str | None:
    """Why the current GPU cannot compute at ``precision``, or None when it can: "tf32" and "bf16" need tensor
    cores of compute capability 8.0 or newer (older cards have no such products). Asks the GPU only for those
    two."""
    if precision not in ("tf32", "bf16"):
        return None
    cupy = _import_cupy() or require_gpu()  # no device-count query on every product: cuBLAS calls this per GEMM
    device = cupy.cuda.Device()
    cc = int(device.compute_capability)  # CuPy caches it per device
    if cc >= TENSOR_CORE_CC:
        return None
    name = cupy.cuda.runtime.getDeviceProperties(device.id)["name"]
    name = name.decode() if isinstance(name, bytes) else str(name)
    return (
        f"precision {precision} needs {precision.upper()} tensor cores, which GPUs of compute capability "
        f"{TENSOR_CORE_CC / 10} and newer have; {name} has {cc / 10}: use fp32"
    )


def require_gpu() -> ModuleType:
    """Return the cupy module, or raise DeviceError saying why the GPU cannot be used."""
    reason = gpu_unavailable_reason()
    if reason is not None:
        raise DeviceError(f"--device gpu needs a CUDA GPU: {reason}")
    import cupy

    return cupy


def is_gpu_array(x: Any) -> bool:
    return type(x).__module__.startswith("cupy")


def device_of(x: Any) -> str:
    return "gpu" if is_gpu_array(x) else "cpu"


def array_module(x: Any) -> ModuleType:
    """numpy for host arrays, cupy for device arrays (like cupy.get_array_module, without importing cupy)."""
    if is_gpu_array(x):
        import cupy

        return cupy
    return np


def xp_for(device: str) -> ModuleType:
    check_device(device)
    return require_gpu() if device == "gpu" else np


def check_device(device: str) -> str:
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}: expected one of {DEVICES}")
    return device


def to_device(x: Any, device: str) -> Any:
    """Copy an array to ``device`` (a no-op when it is already there)."""
    check_device(device)
    if device == "gpu":
        cupy = require_gpu()
        return x if is_gpu_array(x) else cupy.asarray(x)
    return x.get() if is_gpu_array(x) else np.asarray(x)


def to_numpy(x: Any) -> np.ndarray:
    return to_device(x, "cpu")


def host_copies(arrays: dict[str, Any]) -> dict[str, np.ndarray]:
    """``{key: a host copy of the array}``, the device's arrays brought over in one transfer per dtype.

    Each transfer from the GPU waits for the device; a checkpoint's few hundred small arrays, copied one by
    one, took ~7 ms an epoch on an H200 (``bench/results/run-wallclock-2026-12-02.md``). The copies of one
    transfer are views of one host buffer, each its own region."""
    out: dict[str, np.ndarray] = {}
    groups: dict[Any, list[str]] = {}
    for key, value in arrays.items():
        if is_gpu_array(value):
            groups.setdefault(value.dtype, []).append(key)
        else:
            out[key] = np.array(value, copy=True)
    if groups:
        cupy = require_gpu()
        for keys in groups.values():
            flat = cupy.concatenate([arrays[key].ravel() for key in keys]).get()
            start = 0
            for key in keys:
                shape = arrays[key].shape
                size = int(np.prod(shape, dtype=np.int64))
                out[key] = flat[start : start + size].reshape(shape)
                start += size
    return {key: out[key] for key in arrays}


def set_cpu_kernels(impl: str) -> None:
    """Choose the CPU kernels: ``"numba"`` (default, fast) or ``"reference"`` (plain NumPy)."""
    global _cpu_impl
    if impl not in CPU_IMPLEMENTATIONS:
        raise ValueError(f"unknown CPU kernel implementation {impl!r}: expected one of {CPU_IMPLEMENTATIONS}")
    _cpu_impl = impl


def get_cpu_kernels() -> str:
    return _cpu_impl


def set_precision(precision: str) -> None:
    """How the GPU kernels multiply float32 arrays: ``"fp32"`` (default), ``"tf32"`` or ``"bf16"`` (see
    PRECISIONS above). The kernels read it at each call, so a CUDA graph keeps the precision it was
    captured with. ``TINYGAN_PRECISION`` (or the older ``TINYGAN_TF32=1``) sets the initial value."""
    global _precision
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    _precision = precision


def get_precision() -> str:
    global _precision
    if _precision is None:
        _precision = _precision_from_environment()
    return _precision


@contextlib.contextmanager
def precision(value: str) -> Iterator[None]:
    """``with precision("tf32"): ...`` runs the block at that precision and restores the previous one."""
    before = get_precision()
    set_precision(value)
    try:
        yield
    finally:
        set_precision(before)


def deferred_joins(x: Any) -> contextlib.AbstractContextManager:
    """The scope of a model's backward for ``x``'s device: on the GPU its layers' side-stream weight gradients
    join the current stream once, at the scope's end (kernels/gpu/streams.py); on the CPU nothing."""
    if is_gpu_array(x):
        from tinygan.kernels.gpu.streams import deferred_joins as scope

        return scope()
    return contextlib.nullcontext()


def kernels(device: str, cpu_impl: str | None = None) -> ModuleType:
    """The kernel namespace for ``device`` ("cpu" or "gpu")."""
    check_device(device)
    if device == "gpu":
        require_gpu()
        return importlib.import_module("tinygan.kernels.gpu")
    impl = cpu_impl or _cpu_impl
    if impl not in CPU_IMPLEMENTATIONS:
        raise ValueError(f"unknown CPU kernel implementation {impl!r}: expected one of {CPU_IMPLEMENTATIONS}")
    name = "tinygan.kernels.cpu" if impl == "numba" else "tinygan.kernels.reference"
    return importlib.import_module(name)


def kernels_for(x: Any) -> ModuleType:
    """The kernel namespace matching the device that ``x`` lives on."""
    return kernels(device_of(x))
