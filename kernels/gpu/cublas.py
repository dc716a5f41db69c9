"""cuBLAS GEMM through ctypes, usable inside CUDA stream capture.

CuPy refuses ``cupy.matmul`` while a stream is capturing a graph ("calling cuBLAS API during
stream capture is currently unsupported"), although cuBLAS itself supports capture. This module
calls ``cublasGemmEx`` / ``cublasDgemm_v2`` directly, on a handle of its own created through the
same libcublas that CuPy loaded, bound to the current stream and given a workspace we own (so
cuBLAS allocates nothing while capturing).

Before capturing, call :func:`bind_stream` on the capture stream (or run one eager
:func:`matmul` on it): creating the handle allocates memory, which must not happen mid-capture.

Row-major arrays are handled with the usual swap: a row-major (m, n) C is a column-major (n, m)
C^T, and C^T = op(B)^T op(A)^T, so cuBLAS is called with B first and A second.

float32 products go through ``cublasGemmEx`` with the compute type of the precision setting
(tinygan.backend.set_precision, read at each call): ``"fp32"`` full FP32 (CUBLAS_COMPUTE_32F), ``"tf32"``
TF32 tensor cores (10-bit mantissa products, as PyTorch does by default for convolutions), ``"bf16"``
BF16 tensor cores; FP32 accumulation in all three. float64 products are always full float64.

bfloat16 operands (uint16 arrays of bfloat16 bits, ``_common.BF16``: what the convolutions form at precision
"bf16") are multiplied on the BF16 tensor cores with FP32 accumulation (``CUBLAS_COMPUTE_32F`` on
``CUDA_R_16BF`` inputs); the product is float32, or rounded to bfloat16 with ``out_dtype=BF16``.

:func:`matmul_accumulate` is the weight gradients' GEMM: ``dW += op(a) @ op(b)`` straight into the layer's
gradient buffer (beta = 1), with no temporary product and no separate ``+=`` kernel.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading

import cupy
import numpy as np

from ._common import BF16, capturing

CUBLAS_OP_N = 0
CUBLAS_OP_T = 1
CUDA_R_32F = 0
CUDA_R_16BF = 14
CUBLAS_COMPUTE_32F = 68
CUBLAS_GEMM_DEFAULT = -1
# cublasComputeType_t for float32 inputs and outputs, by tinygan.backend precision.
COMPUTE_TYPES = {"fp32": 68, "tf32": 77, "bf16": 75}  # 32F, 32F_FAST_TF32, 32F_FAST_16BF

# cuBLAS asks for at least 4 MiB of workspace; Hopper kernels use up to 32 MiB.
WORKSPACE_BYTES = 32 * 1024 * 1024

_STATUS = {
    1: "CUBLAS_STATUS_NOT_INITIALIZED",
    3: "CUBLAS_STATUS_ALLOC_FAILED",
    7: "CUBLAS_STATUS_INVALID_VALUE",
    8: "CUBLAS_STATUS_ARCH_MISMATCH",
    11: "CUBLAS_STATUS_MAPPING_ERROR",
    13: "CUBLAS_STATUS_EXECUTION_FAILED",
    14: "CUBLAS_STATUS_INTERNAL_ERROR",
    15: "CUBLAS_STATUS_NOT_SUPPORTED",
    16: "CUBLAS_STATUS_LICENSE_ERROR",
}

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None


class _Handle:
    def __init__(self, lib: ctypes.CDLL) -> None:
        self.ptr = ctypes.c_void_p()
        _check(lib.cublasCreate_v2(ctypes.byref(self.ptr)), "cublasCreate_v2")
        self.workspace = cupy.empty(WORKSPACE_BYTES, dtype=cupy.uint8)
        self.stream: int | None = None


_handles: dict[tuple[int, int, int], _Handle] = {}  # (device, thread, stream)


def _check(status: int, what: str) -> None:
    if status != 0:
        raise RuntimeError(f"{what} failed: {_STATUS.get(status, 'cuBLAS status')} ({status})")


def _loaded_cublas_path() -> str | None:
    """The libcublas already mapped into this process (CuPy's), so ours is the very same library."""
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.rsplit(None, 1)[-1]
                name = path.rsplit("/", 1)[-1]
                if name.startswith("libcublas.so"):
                    return path
    except OSError:
        pass
    return None


def library() -> ctypes.CDLL:
    """CuPy's libcublas, opened through ctypes with the prototypes this module uses."""
    global _lib
    if _lib is not None:
        return _lib
    with _lock:
        if _lib is not None:
            return _lib
        # Importing CuPy's binding maps its libcublas into the process.
        import cupy_backends.cuda.libs.cublas  # noqa: F401

        candidates = [_loaded_cublas_path(), "libcublas.so.13", "libcublas.so.12", ctypes.util.find_library("cublas")]
        errors = []
        lib = None
        for name in candidates:
            if not name:
                continue
            try:
                lib = ctypes.CDLL(name)
                break
            except OSError as exc:
                errors.append(f"{name}: {exc}")
        if lib is None:
            raise OSError("could not load libcublas: " + "; ".join(errors))
        vp, ci, sz = ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t
        lib.cublasCreate_v2.argtypes = [ctypes.POINTER(vp)]
        lib.cublasSetStream_v2.argtypes = [vp, vp]
        lib.cublasSetWorkspace_v2.argtypes = [vp, vp, sz]
        lib.cublasSetMathMode.argtypes = [vp, ci]
        for fn, real in ((lib.cublasSgemm_v2, ctypes.c_float), (lib.cublasDgemm_v2, ctypes.c_double)):
            fn.argtypes = [vp, ci, ci, ci, ci, ci, ctypes.POINTER(real), vp, ci, vp, ci, ctypes.POINTER(real), vp, ci]
        lib.cublasGemmEx.argtypes = [vp, ci, ci, ci, ci, ci, vp, vp, ci, ci, vp, ci, ci, vp, vp, ci, ci, ci, ci]
        for fn in (
            lib.cublasGemmEx,
            lib.cublasCreate_v2,
            lib.cublasSetStream_v2,
            lib.cublasSetWorkspace_v2,
            lib.cublasSetMathMode,
            lib.cublasSgemm_v2,
            lib.cublasDgemm_v2,
        ):
            fn.restype = ci
        _lib = lib
        return lib


def _handle(stream: cupy.cuda.Stream | None = None, create: bool = True) -> _Handle:
    """This thread's handle for the current device and ``stream`` (default: the current one).

    One handle, with its own workspace, per stream: a captured graph keeps the workspace address it was
    recorded with, so two trainers (two streams) sharing one workspace would race on it when one replays
    its graph while the other runs.
    """
    lib = library()
    stream = stream if stream is not None else cupy.cuda.get_current_stream()
    key = (cupy.cuda.Device().id, threading.get_ident(), stream.ptr)
    h = _handles.get(key)
    if h is None:
        if not create:
            raise RuntimeError(
                "tinygan.kernels.gpu.cublas: no cuBLAS handle yet for this stream and it is capturing a graph; "
                "call cublas.bind_stream(stream) (or one eager matmul) before begin_capture()"
            )
        h = _handles[key] = _Handle(lib)
        _check(lib.cublasSetStream_v2(h.ptr, ctypes.c_void_p(stream.ptr)), "cublasSetStream_v2")
        # cublasSetStream resets the workspace to cuBLAS's own pool, which would allocate under capture.
        _check(
            lib.cublasSetWorkspace_v2(h.ptr, ctypes.c_void_p(h.workspace.data.ptr), WORKSPACE_BYTES),
            "cublasSetWorkspace_v2",
        )
        h.stream = stream.ptr
    return h


def bind_stream(stream: cupy.cuda.Stream | None = None) -> None:
    """Create this thread's handle (if needed) and bind it to ``stream``; call before capturing on it."""
    _handle(stream)


def _row_strided(x: cupy.ndarray) -> bool:
    """Whether ``x``'s rows are contiguous and evenly spaced (a C-contiguous array, or a view of the first columns
    of a wider one): cuBLAS then reads it at its pitch (:func:`_ld`), and no copy is made."""
    size = x.itemsize
    return x.strides[1] == size and x.strides[0] % size == 0 and x.strides[0] >= x.shape[1] * size


def _ld(x: cupy.ndarray) -> int:
    """The leading dimension (row pitch, in elements) of a row-strided matrix."""
    return max(1, x.strides[0] // x.itemsize) if x.shape[0] > 1 else max(1, x.shape[1])


def _row_major(x: cupy.ndarray, trans: bool) -> tuple[cupy.ndarray, bool]:
    """A row-strided array (:func:`_row_strided`) and transpose flag describing the same matrix as (x, trans)."""
    if x.flags.c_contiguous or (x.ndim == 2 and x.shape[0] > 0 and x.shape[1] > 0 and _row_strided(x)):
        return x, trans
    if x.flags.f_contiguous:
        # x.T is C-contiguous and op(x) = op'(x.T) with the flag flipped: no copy.
        return x.T, not trans
    return cupy.ascontiguousarray(x), trans


def matmul(
    a: cupy.ndarray,
    b: cupy.ndarray,
    out: cupy.ndarray | None = None,
    transa: bool = False,
    transb: bool = False,
    *,
    alpha: float = 1.0,
    beta: float = 0.0,
    precision: str | None = None,
    out_dtype: np.dtype | None = None,
) -> cupy.ndarray:
    """``out = alpha * op(a) @ op(b) + beta * out`` for 2-D float32, float64 or bfloat16 (``BF16``) CuPy arrays.

    ``op(x)`` is ``x.T`` when the matching trans flag is set. Works inside stream capture once the
    stream has been bound (see :func:`bind_stream`). ``precision`` (float32 only; default: the
    backend's setting) picks the product: "fp32", "tf32" or "bf16". bfloat16 operands give a float32
    product, or a bfloat16 one with ``out_dtype=BF16`` (``out``, when given, decides).
    """
    for name, x in (("a", a), ("b", b)):
        if not isinstance(x, cupy.ndarray) or x.ndim != 2:
            raise ValueError(f"cublas.matmul: {name} must be a 2-D CuPy array")
    if a.dtype not in (np.float32, np.float64, BF16) or b.dtype != a.dtype:
        raise TypeError(
            f"cublas.matmul: a and b must both be float32, float64 or bfloat16 (uint16 bits), got {a.dtype} and "
            f"{b.dtype}"
        )
    bf16 = a.dtype == BF16
    if out is not None:
        dtype = out.dtype
    elif out_dtype is not None:
        dtype = np.dtype(out_dtype)
    else:
        dtype = np.dtype(np.float32) if bf16 else a.dtype
    if dtype not in ((np.float32, BF16) if bf16 else (a.dtype,)):
        raise TypeError(f"cublas.matmul: a product of {a.dtype} operands cannot be written as {dtype}")
    a, transa = _row_major(a, transa)
    b, transb = _row_major(b, transb)
    m, k = (a.shape[1], a.shape[0]) if transa else a.shape
    kb, n = (b.shape[1], b.shape[0]) if transb else b.shape
    if k != kb:
        raise ValueError(f"cublas.matmul: inner dimensions differ ({m}x{k} @ {kb}x{n})")
    if out is None:
        if beta != 0.0:
            raise ValueError("cublas.matmul: beta != 0 needs an out array to accumulate into")
        out = cupy.empty((m, n), dtype=dtype)
    elif (
        out.shape != (m, n)
        or out.dtype != dtype
        or not (out.flags.c_contiguous or (m > 0 and n > 0 and _row_strided(out)))
    ):
        raise ValueError(
            f"cublas.matmul: out must be a C-contiguous (or row-strided) {dtype} array of shape {(m, n)}, "
            f"got {out.dtype} {tuple(out.shape)}"
        )
    if m == 0 or n == 0:
        return out
    if k == 0:
        # Leading dimensions of empty operands would be 0, which cuBLAS rejects.
        if beta == 0.0:
            out.fill(0)
        else:
            out *= beta
        return out
    h = _handle(create=not capturing())
    if bf16 or dtype == np.float32:
        from tinygan.backend import get_precision, precision_unavailable_reason

        if precision is None and not bf16:
            precision = get_precision()
        if bf16 or precision != "fp32":  # never computed silently at another precision than the one asked for
            reason = precision_unavailable_reason("bf16" if bf16 else precision)
            if reason is not None:
                raise ValueError(f"cublas.matmul: {reason}")
        if bf16:  # bfloat16 operands: FP32 accumulation, a float32 or bfloat16 product
            in_type, out_type, compute = CUDA_R_16BF, (CUDA_R_16BF if dtype == BF16 else CUDA_R_32F), CUBLAS_COMPUTE_32F
        else:
            in_type, out_type, compute = CUDA_R_32F, CUDA_R_32F, COMPUTE_TYPES[precision]
        one, zero = ctypes.c_float(alpha), ctypes.c_float(beta)
        status = library().cublasGemmEx(
            h.ptr,
            CUBLAS_OP_T if transb else CUBLAS_OP_N,
            CUBLAS_OP_T if transa else CUBLAS_OP_N,
            n,
            m,
            k,
            ctypes.byref(one),
            ctypes.c_void_p(b.data.ptr),
            in_type,
            _ld(b),
            ctypes.c_void_p(a.data.ptr),
            in_type,
            _ld(a),
            ctypes.byref(zero),
            ctypes.c_void_p(out.data.ptr),
            out_type,
            _ld(out),
            compute,
            CUBLAS_GEMM_DEFAULT,
        )
        _check(status, "cublasGemmEx (bf16 operands)" if bf16 else f"cublasGemmEx ({precision})")
        return out
    real = ctypes.c_double
    fn = library().cublasDgemm_v2
    status = fn(
        h.ptr,
        CUBLAS_OP_T if transb else CUBLAS_OP_N,
        CUBLAS_OP_T if transa else CUBLAS_OP_N,
        n,
        m,
        k,
        ctypes.byref(real(alpha)),
        ctypes.c_void_p(b.data.ptr),
        _ld(b),
        ctypes.c_void_p(a.data.ptr),
        _ld(a),
        ctypes.byref(real(beta)),
        ctypes.c_void_p(out.data.ptr),
        _ld(out),
    )
    _check(status, "cublasDgemm_v2")
    return out


def matmul_accumulate(
    out: cupy.ndarray,
    a: cupy.ndarray,
    b: cupy.ndarray,
    transa: bool = False,
    transb: bool = False,
    what: str = "matmul_accumulate",
) -> cupy.ndarray:
    """``out += op(a) @ op(b)`` in one GEMM with beta = 1, for a gradient buffer ``out`` (C-contiguous, of the
    product's shape and dtype; written in place, never replaced, so a captured graph keeps its address).

    The product follows the precision setting as every GEMM here does. ``what`` names the caller in errors.
    """
    want = np.dtype(np.float32) if a.dtype == BF16 else a.dtype  # bfloat16 operands accumulate into float32
    if not isinstance(out, cupy.ndarray) or not out.flags.c_contiguous or out.dtype != want:
        got = f"{getattr(out, 'dtype', type(out).__name__)} {tuple(getattr(out, 'shape', ()))}"
        raise ValueError(f"{what}: the gradient buffer must be a C-contiguous {want} CuPy array, got {got}")
    try:
        return matmul(a, b, out=out, transa=transa, transb=transb, beta=1.0)
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from None
