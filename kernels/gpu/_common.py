"""Shared plumbing of the GPU kernels: lazy NVRTC compilation, launch sizes, argument checks.

Each op keeps its CUDA source in a ``.cu`` file beside its wrapper. Kernels are C++ templates over
the element type; a :class:`CudaModule` compiles all of a file's instantiations (``float`` and
``double``) in one NVRTC call the first time any of them is needed, and caches the result for the
life of the process (CuPy additionally caches the binary on disk, keyed by source and options).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cupy
import numpy as np

_HERE = Path(__file__).resolve().parent

# One block size for every kernel: must equal REDUCE_THREADS in _common.cu for the reduction kernels.
THREADS = 256
# Kernels loop grid-stride, so the grid only needs to fill the GPU several times over.
MAX_BLOCKS = 8192

_CTYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}
_INDEX_TYPES = ("int", "long long")

_OPTIONS = ("-std=c++17",)

# bfloat16, for the GEMM operands of precision "bf16" (tinygan.backend.set_precision). CuPy has no bfloat16
# dtype, so such an operand is a uint16 array holding the top 16 bits of each float32 (rounded to nearest,
# ties to even: _common.cu's to_bf16), which cuBLAS reads as CUDA_R_16BF. Only GEMM operands and the
# buffers between a GEMM and its layout pass are ever stored this way; layers see float32.
BF16 = np.dtype(np.uint16)


def low_precision(dtype: Any) -> bool:
    """Whether a float32 convolution now forms its GEMM operands in bfloat16 (precision "bf16")."""
    from tinygan.backend import get_precision

    return np.dtype(dtype) == np.float32 and get_precision() == "bf16"


def read_source(filename: str) -> str:
    """The .cu file with the shared helpers prepended."""
    common = (_HERE / "_common.cu").read_text()
    return common + "\n" + (_HERE / filename).read_text()


class CudaModule:
    """The kernels of one .cu file, compiled on first use.

    ``templates`` are kernels templated on the element type (instantiated for float and double);
    ``indexed`` are templated on the element type and the index type, ``<T, I>``, instantiated with
    ``int`` and ``long long`` (see :meth:`get_for`); ``plain`` are kernels without a template parameter.
    ``min_cc``: the oldest compute capability its kernels compile for (80 for 8.0: cp.async, mma.sync), so that an
    older GPU is told so in one line instead of by NVRTC's PTX errors; tools/nvcc_check.py compiles each module
    for the targets it claims.
    """

    def __init__(
        self,
        filename: str,
        templates: tuple[str, ...] = (),
        plain: tuple[str, ...] = (),
        indexed: tuple[str, ...] = (),
        min_cc: int = 0,
    ) -> None:
        self.filename = filename
        self.templates = templates
        self.plain = plain
        self.indexed = indexed
        self.min_cc = min_cc
        self._module: cupy.RawModule | None = None
        self._kernels: dict[str, Any] = {}  # by instantiation name, e.g. "col2im<float, int>"

    def name_expressions(self) -> list[str]:
        names = [f"{name}<{ct}>" for name in self.templates for ct in _CTYPES.values()]
        names += [f"{name}<{ct}, {it}>" for name in self.indexed for ct in _CTYPES.values() for it in _INDEX_TYPES]
        return names + list(self.plain)

    def source(self) -> str:
        return read_source(self.filename)

    def get(self, name: str, dtype: Any = None, wide: bool = False) -> Any:
        """The compiled kernel ``name`` (its ``dtype`` instantiation for a template; for an indexed
        kernel, the one indexing with long long when ``wide``, else with int)."""
        ctype = None if dtype is None else ctype_of(dtype)
        if name in self.indexed:
            full = f"{name}<{ctype}, {_INDEX_TYPES[1] if wide else _INDEX_TYPES[0]}>"
        else:
            full = name if ctype is None else f"{name}<{ctype}>"
        kernel = self._kernels.get(full)
        if kernel is None:
            if self._module is None:
                self.check_device()
                self._module = cupy.RawModule(
                    code=self.source(), options=_OPTIONS, name_expressions=self.name_expressions()
                )
            kernel = self._module.get_function(full)
            self._kernels[full] = kernel
        return kernel

    def check_device(self) -> None:
        """Raise DeviceError, in one line, where the current GPU is older than ``min_cc``."""
        cc = compute_capability()
        if cc < self.min_cc:
            from tinygan.backend import DeviceError

            raise DeviceError(
                f"{self.filename}: its kernels need a GPU of compute capability {self.min_cc / 10} or newer; "
                f"this one has {cc / 10}"
            )

    def get_for(self, name: str, dtype: Any, *arrays: cupy.ndarray) -> Any:
        """The indexed kernel ``name`` for ``arrays``: 32-bit index math when every offset into them
        fits an int, 64-bit otherwise. Two kernels rather than a flag: in one kernel, the 64-bit
        path's registers lower the occupancy of the 32-bit one too (measured on col2im: 20% slower)."""
        return self.get(name, dtype, wide=not narrow(*arrays))


def ctype_of(dtype: Any) -> str:
    dtype = np.dtype(dtype)
    try:
        return _CTYPES[dtype]
    except KeyError:
        raise TypeError(f"GPU kernels take float32 or float64 arrays, received {dtype}") from None


_SMS: dict[int, int] = {}


def sm_count() -> int:
    """The current device's number of SMs (asked once per device)."""
    device = cupy.cuda.Device()
    sms = _SMS.get(device.id)
    if sms is None:
        sms = _SMS[device.id] = cupy.cuda.runtime.deviceGetAttribute(
            cupy.cuda.runtime.cudaDevAttrMultiProcessorCount, device.id
        )
    return sms


def compute_capability() -> int:
    """The current device's compute capability as an integer, 90 for 9.0 (CuPy caches it per device)."""
    return int(cupy.cuda.Device().compute_capability)


def grid_for(n: int, threads: int = THREADS) -> tuple[int]:
    return (max(1, min(MAX_BLOCKS, -(-n // threads))),)


def launch(kernel: Any, n: int, args: tuple) -> None:
    """Launch a grid-stride kernel over ``n`` items (no launch at all for n == 0)."""
    if n > 0:
        kernel(grid_for(n), (THREADS,), args)


def device_array(x: Any, what: str, op: str) -> cupy.ndarray:
    """``x`` as a C-contiguous CuPy float array, or a TypeError naming the op and the argument."""
    if not isinstance(x, cupy.ndarray):
        raise TypeError(
            f"tinygan.kernels.gpu.{op}: {what} must be a CuPy array (on the GPU), received {type(x).__name__}"
        )
    ctype_of(x.dtype)
    return cupy.ascontiguousarray(x)


def same_dtype(op: str, first: cupy.ndarray, **others: Any) -> None:
    for name, arr in others.items():
        if arr is not None and arr.dtype != first.dtype:
            raise TypeError(f"tinygan.kernels.gpu.{op}: {name} has dtype {arr.dtype}, expected {first.dtype}")


def scalar(dtype: Any, value: float) -> np.generic:
    """A host scalar of the kernel's element type (CuPy passes numpy scalars by their exact type)."""
    return np.dtype(dtype).type(value)


def idx(value: int) -> np.int64:
    """An ``index_t`` (long long) kernel argument."""
    return np.int64(value)


# Indexed kernels use 32-bit index math when every offset fits (CudaModule.get_for).
INT32_LIMIT = 2**31 - 1


def narrow(*arrays: Any) -> bool:
    """Whether every element offset of ``arrays`` fits a 32-bit int."""
    return all(a.size <= INT32_LIMIT for a in arrays)


def pair(value: Any) -> tuple[int, int]:
    """Layers pass (h, w) pairs; accept a plain int as well."""
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    h, w = value
    return int(h), int(w)


def capturing() -> bool:
    """Whether the current stream is recording a CUDA graph (CuPy's own cuBLAS calls refuse to run then)."""
    try:
        return bool(cupy.cuda.get_current_stream().is_capturing())
    except Exception:  # the legacy default stream cannot capture, and may refuse to be asked
        return False


_capture_gemm_depth = 0


@contextlib.contextmanager
def capture_gemm() -> Iterator[None]:
    """Inside this block every GEMM goes through the ctypes cuBLAS call, captured or not.

    A training step run eagerly and the same step replayed from a CUDA graph then run the very same
    cuBLAS kernels on the same handle, so they give the same bits (cupy.matmul may pick others).
    """
    global _capture_gemm_depth
    _capture_gemm_depth += 1
    try:
        yield
    finally:
        _capture_gemm_depth -= 1


def gemm(
    a: cupy.ndarray, b: cupy.ndarray, transa: bool = False, transb: bool = False, out_dtype: Any = None
) -> cupy.ndarray:
    """``op(a) @ op(b)`` for 2-D arrays: cupy.matmul normally, our ctypes cuBLAS call while a graph is
    being captured (the only GEMM that works there), inside :func:`capture_gemm`, for float32 at a
    precision other than "fp32" (tinygan.backend.set_precision: cupy.matmul knows no such setting) and for
    bfloat16 operands (:data:`BF16`; the product is float32, or bfloat16 with ``out_dtype=BF16``)."""
    from tinygan.backend import get_precision

    if _capture_gemm_depth or capturing() or a.dtype == BF16 or (a.dtype == np.float32 and get_precision() != "fp32"):
        from .cublas import matmul

        return matmul(a, b, transa=transa, transb=transb, out_dtype=out_dtype)
    return cupy.matmul(a.T if transa else a, b.T if transb else b)
