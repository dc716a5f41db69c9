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

import importlib
import os
from types import ModuleType
from typing import Any

import numpy as np

DEVICES = ("cpu", "gpu")
CPU_IMPLEMENTATIONS = ("numba", "reference")

_cpu_impl = os.environ.get("TINYGAN_CPU_KERNELS", "numba")


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


def set_cpu_kernels(impl: str) -> None:
    """Choose the CPU kernels: ``"numba"`` (default, fast) or ``"reference"`` (plain NumPy)."""
    global _cpu_impl
    if impl not in CPU_IMPLEMENTATIONS:
        raise ValueError(f"unknown CPU kernel implementation {impl!r}: expected one of {CPU_IMPLEMENTATIONS}")
    _cpu_impl = impl


def get_cpu_kernels() -> str:
    return _cpu_impl


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
