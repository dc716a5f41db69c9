"""Run tinygan.kernels.gpu's Python code without a GPU: a pytest plugin that installs a NumPy-backed ``cupy``
and emulates the CUDA kernels the weight layers use, checking every launch's arguments against the kernel's
CUDA signature in its .cu file (count; pointer dtypes; ``int`` as int32, ``index_t`` as int64, ``T`` as the
element type). It catches what NVRTC and a GPU would otherwise be the first to see: a wrapper passing
arguments in the wrong order, of the wrong width, or one too few.

    python -m pytest -p tools.gpu_emulate tests/test_gpu_fusion.py -k "not captured"
    python -m pytest -p tools.gpu_emulate tests/test_kernel_contract.py tests/test_gpu_conv.py -k "not captured"

Emulated (NumPy, with the kernels' semantics): the layout kernels (cns_to_ncs, ncs_to_cns and its summing form,
add_bias, the channel sums, rows_grad_sum), im2col / col2im, the activations and the fused epilogue's kernels,
conv_igemm's three modes and its split-K reduce, BatchNorm's kernels (both paths, the fused activation,
inference, the running statistics), Adam's kernels (per tensor, and over a model's pointer table, by tensor or
by the chunk table, whose chunks must cover every element once; bench/dev's v1 too) and zero_multi; cuBLAS
(``cublas.matmul``) as a NumPy product with alpha / beta. Outputs of ``cupy.empty`` start as NaN, so an element
a wrapper leaves unwritten shows. Emulated too: input_grad_rms's two kernels and dense_gemm (as a float64 product
rounded once, with its grid and k split checked). Not emulated: Philox, BCE,
dropout, the GAN step's other kernels, streams and graph capture (those tests fail here with "no emulation of
kernel ..."). Launch arguments also check ``double`` as float64 and ``unsigned`` (fast_div's multipliers) as
uint32. This checks the Python side only: the CUDA sources still need a compiler (``nvcc -std=c++17 -arch=sm_90
-ptx`` on a file made of _common.cu and the op's .cu) and a GPU run.
"""

import contextlib
import re
import sys
import types

import numpy as np


# -- a NumPy-backed cupy ----------------------------------------------------------------------------------
class _Data:
    def __init__(self, a):
        self.ptr = a.__array_interface__["data"][0]


class ndarray(np.ndarray):
    @property
    def data(self):
        return _Data(self)

    def get(self):
        return np.array(self).view(np.ndarray)


ndarray.__module__ = "cupy"  # tinygan.backend tells device arrays by their type's module


def _w(a):
    if isinstance(a, np.ndarray) and not isinstance(a, ndarray):
        return a.view(ndarray)
    return a


def asarray(a, dtype=None):
    if isinstance(a, ndarray) and (dtype is None or a.dtype == dtype):
        return a
    return _w(np.array(a, dtype=dtype))


def ascontiguousarray(a, dtype=None):
    return _w(np.ascontiguousarray(a, dtype=dtype))


def _nan(shape, dtype):
    dtype = np.dtype(dtype)
    # uint16 arrays hold bfloat16 bits (kernels/gpu/_common.py BF16): start them as bfloat16 NaN as well.
    fill = np.nan if dtype.kind == "f" else (0x7FC0 if dtype == np.uint16 else 0)
    return np.full(shape, fill, dtype).view(ndarray)


def empty(shape, dtype=np.float64):
    return _nan(shape, dtype)


def empty_like(a, dtype=None):
    return _nan(a.shape, dtype or a.dtype)


def asnumpy(a):
    return np.array(a).view(np.ndarray)


def matmul(a, b, out=None):
    return _w(np.matmul(np.asarray(a), np.asarray(b)))


def _numpy_fallback(name):
    f = getattr(np, name)
    if callable(f) and not isinstance(f, type):

        def wrapped(*args, **kw):
            r = f(*args, **kw)
            return _w(r) if isinstance(r, np.ndarray) else r

        return wrapped
    return f


class RawModule:
    def __init__(self, *a, **k):
        raise RuntimeError("fake cupy: RawModule must not be reached (CudaModule.get is emulated)")


class _Stream:
    ptr = 0

    def __init__(self, *a, **k):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False

    def is_capturing(self):
        return False

    def synchronize(self):
        pass

    def wait_event(self, event):  # the emulator runs everything in program order
        pass


class _Event:
    def __init__(self, *a, **k):
        pass

    def record(self, stream=None):
        pass

    def synchronize(self):
        pass


class _Device:
    id = 0
    compute_capability = "90"  # an H200's (dense_gemm's clusters)

    def __init__(self, *a):
        pass

    def synchronize(self):
        pass


class _Runtime:
    cudaDevAttrMultiProcessorCount = 16  # the CUDA enum's value

    @staticmethod
    def getDeviceCount():
        return 1

    @staticmethod
    def deviceGetAttribute(attr, device):
        assert attr == _Runtime.cudaDevAttrMultiProcessorCount, f"fake cupy: device attribute {attr}"
        return 132  # an H200's SMs: grids sized as on the card

    @staticmethod
    def getDeviceProperties(device):
        return {"name": b"NVIDIA H200 (emulated)", "major": 9, "minor": 0}


class _Pool:
    def free_all_blocks(self):
        pass

    def total_bytes(self):
        return 0

    def used_bytes(self):
        return 0


class cuda:
    Stream = _Stream
    Event = _Event
    Device = _Device
    runtime = _Runtime
    MemoryPool = _Pool

    @staticmethod
    def get_current_stream():
        return _Stream()

    @staticmethod
    @contextlib.contextmanager
    def using_allocator(*a):
        yield


def get_default_memory_pool():
    return _Pool()


float32, float64, int32, int64, uint8, uintp, bool_ = (
    np.float32,
    np.float64,
    np.int32,
    np.int64,
    np.uint8,
    np.uintp,
    np.bool_,
)


def _install_cupy() -> None:
    module = types.ModuleType("cupy")
    for name, value in globals().items():
        if not name.startswith("__") and name not in (
            "contextlib",
            "re",
            "sys",
            "types",
            "np",
            "_install_cupy",
            "_numpy_fallback",
        ):
            setattr(module, name, value)
    module.__getattr__ = _numpy_fallback
    sys.modules["cupy"] = module
    for name in ("cupy_backends", "cupy_backends.cuda", "cupy_backends.cuda.libs", "cupy_backends.cuda.libs.cublas"):
        sys.modules[name] = types.ModuleType(name)


_install_cupy()

# -- the kernels ---------------------------------------------------------------------------------------------
import tinygan.backend as backend  # noqa: E402  (after the fake cupy is installed)

backend.gpu_unavailable_reason = lambda: None

from tinygan.kernels.bf16 import from_bf16, to_bf16  # noqa: E402
from tinygan.kernels.fastdiv import fast_div_args  # noqa: E402
from tinygan.kernels.gpu import _common, cublas  # noqa: E402
from tinygan.kernels.reference import conv2d as RC  # noqa: E402

_SIGS = {}
LAUNCHES = {}


def _signature(filename, name, source=None):
    key = (filename, name)
    if key not in _SIGS:
        src = _common.read_source(filename) if source is None else source
        m = re.search(
            r"__global__\s+void\s+(__cluster_dims__\([^)]*\)\s*)?(__launch_bounds__\([^)]*\)\s*)?"
            + re.escape(name)
            + r"\s*\(",
            src,
        )
        assert m, f"no kernel {name} in {filename}"
        i, depth = m.end(), 1
        j = i
        while depth:
            depth += {"(": 1, ")": -1}.get(src[j], 0)
            j += 1
        params = [p.strip() for p in src[i : j - 1].split(",")]
        _SIGS[key] = [p.replace("__restrict__", "").rsplit(None, 1)[0].strip() for p in params]
    return _SIGS[key]


def _check(filename, full, args, source=None):
    name = full.split("<")[0]
    targs = full[full.index("<") + 1 : -1].split(",") if "<" in full else []
    T = {"float": np.float32, "double": np.float64}.get(targs[0].strip()) if targs else None
    sig = _signature(filename, name.replace("__launch_bounds__", ""), source)
    assert len(sig) == len(args), f"{full}: {len(args)} arguments for {len(sig)} parameters {sig}"
    for typ, a in zip(sig, args):
        base = typ.replace("const", "").replace("*", "").strip()
        if "*" in typ:
            if type(a) is np.uintp and a == 0:
                continue  # a null pointer
            assert isinstance(a, np.ndarray), f"{full}: {typ} got {type(a)}"
            want = {"T": T, "double": np.float64, "float": np.float32, "bf16_t": np.uint16}.get(base)
            if want is not None:
                assert a.dtype == want, f"{full}: {typ} got {a.dtype}"
        elif base == "int":
            assert type(a) is np.int32, f"{full}: int got {type(a)}"
        elif base == "index_t":
            assert type(a) is np.int64, f"{full}: index_t got {type(a)}"
        elif base == "double":
            assert type(a) is np.float64, f"{full}: double got {type(a)}"
        elif base == "float":
            assert type(a) is np.float32, f"{full}: float got {type(a)}"
        elif base == "unsigned":
            assert type(a) is np.uint32, f"{full}: unsigned got {type(a)}"
        elif base == "T":
            assert type(a) is np.dtype(T).type, f"{full}: T got {type(a)}"
        else:
            raise AssertionError(f"{full}: unknown parameter type {typ}")
    return name, T


def _act(z, use, slope):
    return np.where(z > 0, z, z * slope) if use else z


def _act_grad(dy, y, use, slope):
    return np.where(y > 0, dy, dy * slope) if use else dy


self_mode = [0]
full_targs = [""]  # the template arguments of the launch being emulated (dense_gemm's TA, TB)


def _flat(x):
    """A kernel argument's elements in memory order."""
    return np.asarray(x).reshape(-1)


def _bn_view(x, N, C, S):
    """An (N, C, S) array's values channel by channel: (C, N*S), in the kernels' order m = n*S + s."""
    return np.asarray(x).reshape(-1)[: N * C * S].reshape(N, C, S).transpose(1, 0, 2).reshape(C, N * S)


def _bn_store(out, values_cm, N, C, S):
    """Write (C, N*S) values back into an (N, C, S) array."""
    np.asarray(out).reshape(-1)[: N * C * S] = values_cm.reshape(C, N, S).transpose(1, 0, 2).reshape(-1)


def _bn_normalize(x_cm, mean, inv_std, gamma, beta, act, slope, T):
    """xhat and y as the kernels round them: xhat = T((x - mean) * inv_std) in double, y = act(gamma xhat + beta)
    in T."""
    xh = ((x_cm.astype(np.float64) - mean[:, None]) * inv_std[:, None]).astype(T)
    y = (gamma[:, None].astype(T) * xh + beta[:, None].astype(T)).astype(T)
    return xh, _act(y, act, slope).astype(T)


def _run_batchnorm_forward(name, grid, a):
    """The BatchNorm forward kernels: the one-block kernel, and the three of the chunked path (per-chunk mean
    and squared deviations, the per-channel combination, the normalization), with the kernels' arguments."""
    if name == "batchnorm_forward":
        x, gamma, beta, y, xhat, mean_out, var_out, inv_std_out, N, C, S, eps, act, slope = a
        assert grid == (C,)
        T = np.asarray(x).dtype.type
        x_cm = _bn_view(x, N, C, S).astype(np.float64)
        mean = x_cm.mean(axis=1)
        var = ((x_cm - mean[:, None]) ** 2).mean(axis=1)
        inv_std = 1.0 / np.sqrt(var + eps)
        xh, yv = _bn_normalize(x_cm, mean, inv_std, _flat(gamma), _flat(beta), act, slope, T)
        _bn_store(xhat, xh, N, C, S)
        _bn_store(y, yv, N, C, S)
        for out, v in ((mean_out, mean), (var_out, var), (inv_std_out, inv_std)):
            _flat(out)[:C] = v.astype(T)
    elif name == "batchnorm_partial_stats":
        x, part_mean, part_m2, N, C, S, chunk = a
        parts = grid[0]
        assert grid[1] == C and parts * chunk >= N * S > (parts - 1) * chunk
        x_cm = _bn_view(x, N, C, S).astype(np.float64)
        for p in range(parts):
            piece = x_cm[:, p * chunk : (p + 1) * chunk]
            mu = piece.mean(axis=1)
            _flat(part_mean).reshape(C, parts)[:, p] = mu
            _flat(part_m2).reshape(C, parts)[:, p] = ((piece - mu[:, None]) ** 2).sum(axis=1)
    elif name == "batchnorm_finish_stats":
        part_mean, part_m2, stats, mean_out, var_out, inv_std_out, C, M, chunk, parts, eps = a
        T = np.asarray(mean_out).dtype.type
        pm, pm2 = _flat(part_mean).reshape(C, parts), _flat(part_m2).reshape(C, parts)
        n, mean, m2 = np.zeros(C), np.zeros(C), np.zeros(C)
        for p in range(parts):  # Chan, Golub and LeVeque's pairwise update, in the kernel's order
            nb = float(min(chunk, M - p * chunk))
            delta = pm[:, p] - mean
            total = n + nb
            mean = mean + delta * nb / total
            m2 = m2 + pm2[:, p] + delta * delta * n * nb / total
            n = total
        var = m2 / M
        inv_std = 1.0 / np.sqrt(var + eps)
        _flat(stats)[:C], _flat(stats)[C : 2 * C] = mean, inv_std
        for out, v in ((mean_out, mean), (var_out, var), (inv_std_out, inv_std)):
            _flat(out)[:C] = v.astype(T)
    else:  # batchnorm_normalize
        x, gamma, beta, stats, y, xhat, C, S, total, act, slope = a
        T = np.asarray(x).dtype.type
        N = total // (C * S)
        x_cm = _bn_view(x, N, C, S)
        xh, yv = _bn_normalize(
            x_cm, _flat(stats)[:C], _flat(stats)[C : 2 * C], _flat(gamma), _flat(beta), act, slope, T
        )
        _bn_store(xhat, xh, N, C, S)
        _bn_store(y, yv, N, C, S)


def _run_batchnorm_backward(name, grid, a):
    """The BatchNorm backward kernels (one-block, and the chunked path's partial sums, finish and dx pass),
    with the fused activation's gradient formed from dy and the gate y as the kernels form it."""

    def dz_cm(dy, gate, act, slope, N, C, S):
        d = _bn_view(dy, N, C, S)
        return _act_grad(d, _bn_view(gate, N, C, S), act, slope) if act else d

    def dx_cm(dz, xh, inv_std, gamma, s_dy, s_dyx, M, T):
        scale = gamma.astype(np.float64) * inv_std.astype(np.float64) / M
        return (
            scale[:, None] * (M * dz.astype(np.float64) - s_dy[:, None] - xh.astype(np.float64) * s_dyx[:, None])
        ).astype(T)

    if name == "batchnorm_backward":
        dy, xhat, gate, act, slope, inv_std, gamma, dx, dgamma, dbeta, N, C, S = a
        assert grid == (C,)
        T = np.asarray(dy).dtype.type
        dz, xh = dz_cm(dy, gate, act, slope, N, C, S), _bn_view(xhat, N, C, S)
        s_dy = dz.astype(np.float64).sum(axis=1)
        s_dyx = (dz.astype(np.float64) * xh).sum(axis=1)
        _bn_store(dx, dx_cm(dz, xh, _flat(inv_std)[:C], _flat(gamma)[:C], s_dy, s_dyx, N * S, T), N, C, S)
        _flat(dgamma)[:C], _flat(dbeta)[:C] = s_dyx.astype(T), s_dy.astype(T)
    elif name == "batchnorm_partial_grads":
        dy, xhat, gate, act, slope, part, N, C, S, chunk = a
        parts = grid[0]
        assert grid[1] == C and parts * chunk >= N * S > (parts - 1) * chunk
        dz, xh = dz_cm(dy, gate, act, slope, N, C, S).astype(np.float64), _bn_view(xhat, N, C, S)
        pr = _flat(part).reshape(2 * C, parts)
        for p in range(parts):
            sl = slice(p * chunk, (p + 1) * chunk)
            pr[:C, p] = dz[:, sl].sum(axis=1)
            pr[C:, p] = (dz[:, sl] * xh[:, sl]).sum(axis=1)
    elif name == "batchnorm_finish_grads":
        part, sums, dgamma, dbeta, C, parts = a
        T = np.asarray(dgamma).dtype.type
        pr = _flat(part).reshape(2 * C, parts).sum(axis=1)
        _flat(sums)[: 2 * C] = pr
        _flat(dbeta)[:C], _flat(dgamma)[:C] = pr[:C].astype(T), pr[C:].astype(T)
    else:  # batchnorm_input_grad
        dy, xhat, gate, act, slope, inv_std, gamma, sums, dx, M, C, S, total = a
        T = np.asarray(dy).dtype.type
        N = total // (C * S)
        dz, xh = dz_cm(dy, gate, act, slope, N, C, S), _bn_view(xhat, N, C, S)
        _bn_store(
            dx,
            dx_cm(dz, xh, _flat(inv_std)[:C], _flat(gamma)[:C], _flat(sums)[:C], _flat(sums)[C : 2 * C], M, T),
            N,
            C,
            S,
        )


def _at(ptr, n, dtype):
    """The n elements of ``dtype`` at a device pointer from a kernel's pointer table: here the fake device
    memory is the process's own, so the pointer is an address to view."""
    import ctypes

    dtype = np.dtype(dtype)
    if n == 0:
        return np.empty(0, dtype)
    buf = (ctypes.c_char * (n * dtype.itemsize)).from_address(ptr)
    return np.frombuffer(buf, dtype=dtype, count=n)


def _adam_math(p, g, m, v, step_size, b1, c1, b2, c2, eps, sqrt_bc2):
    """adam.cu's adam_math on arrays, in the element type T (v through double, as the kernel)."""
    T = p.dtype.type
    m[:] = (T(b1) * m + T(c1) * g).astype(T)
    v[:] = (np.float64(b2) * v.astype(np.float64) + np.float64(c2) * g.astype(np.float64) ** 2).astype(T)
    p[:] = (p - T(step_size) * (m / (np.sqrt(v) / T(sqrt_bc2) + T(eps)))).astype(T)


def _run_adam(name, grid, block, a):
    """Adam's kernels: per tensor, and over a model's pointer table (by tensor, or by the chunk table, whose
    chunks must cover every element of every tensor exactly once), with the step count on the device."""
    if name == "adam_update":
        p, g, m, v, *scalars, n = a
        _adam_math(_flat(p)[:n], _flat(g)[:n], _flat(m)[:n], _flat(v)[:n], *scalars)
        return
    if name in ("adam_update_multi_device_step", "adam_multi_v1"):
        if name == "adam_multi_v1":
            ptrs, sizes, count, step, advance, lr, beta1, beta2, eps = a
            chunks = None
        else:
            ptrs, sizes, chunks, n_chunks, step, advance, lr, beta1, beta2, eps = a
        t = int(_flat(step)[0]) + 1
        step_size, sqrt_bc2 = lr / (1.0 - beta1**t), np.sqrt(1.0 - beta2**t)
        scalars = (step_size, beta1, 1.0 - beta1, beta2, 1.0 - beta2, eps, sqrt_bc2)
    else:
        ptrs, sizes, chunks, n_chunks, *scalars = a
        step = None
    ptr, size = _flat(ptrs).reshape(-1, 4), _flat(sizes)
    dtype = _TABLE_DTYPE[0]
    tensors = [[_at(int(ptr[k, j]), int(size[k]), dtype) for j in range(4)] for k in range(len(size))]
    if chunks is None:
        for p, g, m, v in tensors:
            _adam_math(p, g, m, v, *scalars)
    else:
        span = 4 * block[0]  # ADAM_PER_THREAD elements a thread
        done = [np.zeros(int(n), dtype=int) for n in size]
        for k, part in _flat(chunks).reshape(-1, 2)[:n_chunks]:
            sl = slice(int(part) * span, min((int(part) + 1) * span, int(size[k])))
            done[k][sl] += 1
            p, g, m, v = (x[sl] for x in tensors[k])
            _adam_math(p, g, m, v, *scalars)
        assert all((d == 1).all() for d in done), f"{name}: the chunks do not cover every element once"
    if step is not None and advance:
        _flat(step)[0], _flat(step)[1] = t, 0


# The element type of the tensors behind a multi-tensor launch's pointer table (the table holds only
# addresses): the kernel's template argument, set before each launch.
_TABLE_DTYPE = [np.float32]


def _check_fast_div(name, magic, *divisors):
    """The (mul, shift) arguments of a kernel's fast_div (kernels/fastdiv.py) for the divisors it decodes by."""
    want = fast_div_args(*(int(d) for d in divisors))
    assert tuple(magic) == want, f"{name}: fast_div arguments {tuple(magic)}, expected {want} for {divisors}"


def _check_vec(name, vec, plane, grid, block, total):
    """A vectorised layout change: vec values a thread, dividing the plane (and so every row), and a grid-stride
    launch over total / vec threads' worth (layout.py's launch: at most MAX_BLOCKS blocks)."""
    from tinygan.kernels.gpu._common import MAX_BLOCKS

    assert vec in (1, 2, 4) and plane % vec == 0, f"{name}: vec={vec} for planes of {plane}"
    assert grid[0] * block[0] * vec >= total or grid[0] == MAX_BLOCKS, f"{name}: grid {grid} for {total}/{vec}"


def _run(name, grid, block, a):
    V = _flat
    if name == "cns_to_ncs":
        src, dst, bias, hb, act, slope, N, C, S, *magic, vec = a
        _check_fast_div(name, magic, S, C)
        _check_vec(name, vec, S, grid, block, N * C * S)
        v = V(src).reshape(C, N, S).transpose(1, 0, 2)
        if hb:
            v = v + V(bias)[:C][None, :, None]
        V(dst)[:] = _act(v, act, slope).reshape(-1)
    elif name in ("ncs_to_cns", "ncs_to_cns_bf16"):
        src, dst, gate, act, slope, N, C, S, *magic, vec = a
        _check_fast_div(name, magic, S, N)
        _check_vec(name, vec, S, grid, block, N * C * S)
        g = V(gate)[: N * C * S] if act else None
        v = _act_grad(V(src).reshape(N, C, S), g.reshape(N, C, S) if act else None, act, slope)
        v = v.transpose(1, 0, 2).reshape(-1)
        V(dst)[:] = to_bf16(v) if name.endswith("bf16") else v
    elif name in ("cast_bf16", "pad_rows"):
        src, dst, rows, cols, ld = a
        v = np.zeros((rows, ld), dtype=np.float64)
        v[:, :cols] = V(src)[: rows * cols].reshape(rows, cols)
        V(dst)[: rows * ld] = to_bf16(v.astype(np.float32)).reshape(-1) if name == "cast_bf16" else v.reshape(-1)
    elif name in ("ncs_to_cns_sum", "ncs_to_cns_sum_bf16"):
        src, dst, gate, act, slope, partial, N, C, S, chunk, *magic = a
        _check_fast_div(name, magic, S)
        parts = grid[0]
        assert grid[1] == C and parts * chunk >= N * S > (parts - 1) * chunk
        g = V(gate)[: N * C * S] if act else None
        v = _act_grad(V(src).reshape(N, C, S), g.reshape(N, C, S) if act else None, act, slope)
        rows = v.transpose(1, 0, 2).reshape(C, N * S)
        V(dst)[:] = to_bf16(rows.reshape(-1)) if name.endswith("bf16") else rows.reshape(-1)
        for p in range(parts):
            partial.reshape(C, parts)[:, p] = rows[:, p * chunk : (p + 1) * chunk].astype(np.float64).sum(axis=1)
    elif name == "add_bias":
        y, bias, act, slope, C, S, total = a
        v = V(y).reshape(-1, C, S) + V(bias)[None, :, None]
        V(y)[:] = _act(v, act, slope).reshape(-1)
    elif name == "dense_row_dot":
        x, w, bias, has_bias, y, m, k, act, slope = a
        v = V(x)[: m * k].reshape(m, k) @ V(w)[:k] + (V(bias)[0] if has_bias else 0)
        V(y)[:m] = _act(v, act, slope)
    elif name == "dense_outer":
        a_, b_, out, m, n = a
        V(out)[: m * n] = np.outer(V(a_)[:m], V(b_)[:n]).reshape(-1)
    elif name == "channel_sum":
        x, out, N, C, S, acc = a
        s = V(x).reshape(N, C, S).astype(np.float64).sum(axis=(0, 2))
        V(out)[:] = (V(out) if acc else 0) + s.astype(out.dtype)
    elif name == "channel_partial":
        x, partial, N, C, S, chunk = a
        flat = V(x).reshape(N, C, S).transpose(1, 0, 2).reshape(C, -1).astype(np.float64)
        parts = grid[0]
        assert grid[1] == C
        for p in range(parts):
            partial.reshape(C, parts)[:, p] = flat[:, p * chunk : (p + 1) * chunk].sum(axis=1)
    elif name == "channel_finish":
        partial, out, parts, acc = a
        s = partial.reshape(-1, parts).sum(axis=1)
        V(out)[:] = (V(out) if acc else 0) + s.astype(out.dtype)
    elif name == "channel_sum_rows":
        x, out, N, C, acc = a
        s = V(x).reshape(N, C).astype(np.float64).sum(axis=0)
        V(out)[:] = (V(out) if acc else 0) + s.astype(out.dtype)
    elif name == "sum_squares_partial":
        dx, total, partial = a
        v = V(dx)[:total].astype(np.float64)
        step = grid[0] * block[0]
        for b in range(grid[0]):  # block b's threads stride the whole array by the grid's width
            idx = np.concatenate([np.arange(b * block[0] + t, total, step) for t in range(block[0])])
            partial[b] = (v[idx] ** 2).sum()
    elif name == "input_grad_rms":
        partial, blocks, n, out = a
        V(out)[0] = np.sqrt(n * V(partial)[:blocks].sum())
    elif name == "rows_grad_sum":
        dy, y, dz, db, act, slope, want, acc, N, C = a
        assert block == (32, 16) and grid[0] * 32 >= C
        v = _act_grad(V(dy).reshape(N, C), V(y).reshape(N, C), act, slope)
        if act:
            V(dz)[:] = v.reshape(-1)
        if want:
            s = v.astype(np.float64).sum(axis=0).astype(db.dtype)
            V(db)[:] = (V(db) if acc else 0) + s
    elif name in ("im2col", "im2col_bf16"):
        x, cols, N, C, H, W, kh, kw, sh, sw, ph, pw, Ho, Wo, rpb, vec = a
        L = N * Ho * Wo  # vec columns a thread, the grid's x covering L / vec of them
        assert vec in (1, 2, 4) and L % vec == 0, (vec, L)
        assert grid[0] * block[0] * vec >= L or grid[0] == 4096, (grid, block, vec, L)
        v = RC.im2col(np.asarray(x).view(np.ndarray), (kh, kw), (sh, sw), (ph, pw))
        # The kernel writes the first C*kh*kw rows; a taller cols (conv2d.gemm_rows) keeps what the host put there.
        cols[: v.shape[0]] = to_bf16(v.astype(np.float32)) if name.endswith("bf16") else v
    elif name in ("col2im", "col2im_bf16"):
        cols, x, bias, hb, act, slope, N, C, H, W, kh, kw, sh, sw, ph, pw, Ho, Wo, *magic = a
        _check_fast_div(name, magic, -(-W // sw), -(-H // sh), C)
        c = from_bf16(cols).astype(x.dtype) if name.endswith("bf16") else np.asarray(cols).view(np.ndarray)
        v = RC.col2im(c, (N, C, H, W), (kh, kw), (sh, sw), (ph, pw))
        if hb:
            v = v + V(bias)[None, :, None, None]
        x[...] = _act(v, act, slope)
    elif name == "conv_igemm":
        mode = int(self_mode[0])
        A, B, out, bias, pbias, N, C, H, W, Cout, kh, kw, sh, sw, ph, pw, Ho, Wo, kps = a
        geo = ((kh, kw), (sh, sw), (ph, pw))
        f64 = lambda t: np.asarray(t).view(np.ndarray).astype(np.float64)  # noqa: E731
        if mode == 0:
            b = f64(bias) if isinstance(bias, np.ndarray) else None
            y = RC.conv2d_forward(f64(B), f64(A), b, geo[1], geo[2])[0]
            out[...] = y.astype(np.float32)
        elif mode == 1:
            dx = RC.conv2d_backward_data(f64(B), f64(A), (N, C, H, W), geo[1], geo[2])
            if isinstance(bias, np.ndarray):
                dx = dx + f64(bias)[None, :, None, None]
            out[...] = dx.astype(np.float32)
        else:
            splits = grid[2]
            cols = RC.im2col(f64(B), (kh, kw), (sh, sw), (ph, pw))
            dW = RC.conv2d_backward_weight(f64(A), cols, (Cout, C, kh, kw))[0].reshape(Cout, -1)
            db = f64(A).sum(axis=(0, 2, 3))
            o = np.asarray(out).reshape(splits, Cout, -1) if splits > 1 else np.asarray(out).reshape(1, Cout, -1)
            o[...] = 0
            o[0] = dW
            if isinstance(pbias, np.ndarray):
                pb = np.asarray(pbias).reshape(splits if splits > 1 else 1, Cout)
                pb[...] = 0
                pb[0] = db
    elif name == "ig_splitk_reduce":
        part, out, count, splits = a
        V(out)[:count] = V(part)[: splits * count].reshape(splits, count).sum(axis=0)
    elif name == "fused_act":
        y, slope, n = a
        V(y)[:] = _act(V(y), 1, slope)
    elif name == "fused_act_grad":
        dy, y, dz, slope, n = a
        V(dz)[:] = _act_grad(V(dy), V(y), 1, slope)
    elif name == "relu_forward":
        x, y, n = a
        V(y)[:] = np.where(V(x) > 0, V(x), 0)
    elif name == "relu_backward":
        dy, y, dx, n = a
        V(dx)[:] = np.where(V(y) > 0, V(dy), 0)
    elif name == "leaky_relu_forward":
        x, y, slope, n = a
        V(y)[:] = np.where(V(x) > 0, V(x), slope * V(x))
    elif name == "leaky_relu_backward":
        dy, x, dx, slope, n = a
        V(dx)[:] = np.where(V(x) > 0, V(dy), slope * V(dy))
    elif name == "sigmoid_forward":
        x, y, n = a
        V(y)[:] = 1 / (1 + np.exp(-V(x)))
    elif name == "sigmoid_backward":
        dy, y, dx, n = a
        V(dx)[:] = V(dy) * V(y) * (1 - V(y))
    elif name == "tanh_backward":
        dy, y, dx, n = a
        V(dx)[:] = V(dy) * (1 - V(y) * V(y))
    elif name == "tanh_forward":
        x, y, n = a
        V(y)[:] = np.tanh(V(x))
    elif name in ("batchnorm_forward", "batchnorm_normalize", "batchnorm_partial_stats", "batchnorm_finish_stats"):
        _run_batchnorm_forward(name, grid, a)
    elif name in ("batchnorm_backward", "batchnorm_partial_grads", "batchnorm_finish_grads", "batchnorm_input_grad"):
        _run_batchnorm_backward(name, grid, a)
    elif name in ("adam_update", "adam_update_multi", "adam_update_multi_device_step", "adam_multi_v1"):
        _run_adam(name, grid, block, a)
    elif name == "zero_multi":
        ptrs, sizes, count = a
        for k in range(count):
            _at(int(_flat(ptrs)[k]), int(_flat(sizes)[k]), _TABLE_DTYPE[0])[:] = 0
    elif name == "batchnorm_inference":
        x, gamma, beta, rm, rv, y, C, S, eps, n = a
        T = np.asarray(x).dtype.type
        c = (np.arange(n) // S) % C
        inv_std = (1.0 / np.sqrt(_flat(rv)[:C].astype(np.float64) + eps)).astype(T)
        _flat(y)[:n] = (_flat(x)[:n] - _flat(rm)[c]) * inv_std[c] * _flat(gamma)[c] + _flat(beta)[c]
    elif name == "batchnorm_update_running":
        rm, rv, mean, var, count, cumulative, keep, f, f_var, m, m_less_1, C = a
        assert grid == (1,), "one block: thread 0 counts the batch before the others read f"
        one = type(keep)(1)
        if cumulative:
            t = V(count)[0] + one
            V(count)[0] = t
            f = one / t
            keep, f_var = one - f, (f * m) / m_less_1
        V(rm)[:C] = V(rm)[:C] * keep + f * V(mean)[:C]
        V(rv)[:C] = V(rv)[:C] * keep + f_var * V(var)[:C]
    elif name in ("dense_gemm_s1", "dense_gemm_cluster"):
        A, B, bias, has_bias, C, M, N, K, lda, ldb, k_split, act, slope, accumulate = a
        targs = [int(t) for t in full_targs[0].split(",")]
        splits = 1 if name == "dense_gemm_s1" else targs.pop(0)
        ta, tb, _pipeline, wide = targs
        rows = 64 if wide else 32
        assert grid == (-(-N // 64), -(-M // rows), splits) and block == (128,), f"{name}: grid {grid} block {block}"
        assert k_split % 16 == 0 and k_split * splits >= K, f"{name}: k_split {k_split} for K {K} in {splits}"
        Am, Bm = V(A).reshape(-1, lda), V(B).reshape(-1, ldb)
        Am = Am.T if ta else Am
        Bm = Bm.T if tb else Bm
        assert Am.shape == (M, K) and Bm.shape == (K, N), f"{name}: {Am.shape} x {Bm.shape} for {M, N, K}"
        prod = Am.astype(np.float64) @ Bm.astype(np.float64)
        if accumulate:
            prod = prod + V(C)[: M * N].reshape(M, N)
        if has_bias:
            prod = prod + V(bias)[:N]
        V(C)[: M * N] = _act(prod, act, slope).astype(np.float32).reshape(-1)
    else:
        raise AssertionError(f"no emulation of kernel {name}")


class _Emu:
    def __init__(self, filename, full, source=None):
        self.filename, self.full, self.source = filename, full, source

    def __call__(self, grid, block, args):
        name, T = _check(self.filename, self.full, args, self.source)
        if T is not None:
            _TABLE_DTYPE[0] = T
        if name == "conv_igemm":
            self_mode[0] = int(self.full.split("<")[1].split(",")[1])
        LAUNCHES[name] = LAUNCHES.get(name, 0) + 1
        full_targs[0] = self.full[self.full.index("<") + 1 : -1] if "<" in self.full else ""
        _run(name, tuple(grid), tuple(block), args)


def _get(self, name, dtype=None, wide=False):
    ctype = None if dtype is None else _common.ctype_of(dtype)
    if name in self.indexed:
        full = f"{name}<{ctype}, {'long long' if wide else 'int'}>"
    else:
        full = name if ctype is None else f"{name}<{ctype}>"
    assert full in self.name_expressions(), f"{full} is not among {self.filename}'s instantiations"
    self.check_device()  # the module's own refusal of an older GPU, before anything would compile
    # The module's own source: bench/dev's modules compile other files than kernels/gpu's (and more of them).
    return _Emu(self.filename, full, self.source())


_common.CudaModule.get = _get


def _matmul(a, b, out=None, transa=False, transb=False, *, alpha=1.0, beta=0.0, precision=None, out_dtype=None):
    for nm, x in (("a", a), ("b", b)):
        if not isinstance(x, np.ndarray) or x.ndim != 2:
            raise ValueError(f"cublas.matmul: {nm} must be a 2-D CuPy array")
    if b.dtype != a.dtype:
        raise TypeError("cublas.matmul: dtypes differ")
    bf16 = a.dtype == np.uint16  # bfloat16 bits: a float32 product (FP32 accumulation), or bfloat16 with out_dtype
    dtype = out.dtype if out is not None else np.dtype(out_dtype or (np.float32 if bf16 else a.dtype))
    if bf16:
        assert dtype in (np.float32, np.uint16), f"cublas.matmul: bf16 operands into {dtype}"
        a, b = from_bf16(a), from_bf16(b)
    else:
        assert dtype == a.dtype, f"cublas.matmul: {a.dtype} operands into {dtype}"
    A = np.asarray(a).T if transa else np.asarray(a)
    B = np.asarray(b).T if transb else np.asarray(b)
    if A.shape[1] != B.shape[0]:
        raise ValueError("cublas.matmul: inner dimensions differ")
    m, n = A.shape[0], B.shape[1]
    import cupy

    if out is None:
        if beta != 0.0:
            raise ValueError("cublas.matmul: beta != 0 needs an out array to accumulate into")
        out = cupy.empty((m, n), dtype=dtype)
    elif out.shape != (m, n) or not (out.flags.c_contiguous or out.strides[1] == out.itemsize):
        raise ValueError(f"cublas.matmul: out must be a C-contiguous (or row-strided) {dtype} array of shape {(m, n)}")
    prod = (A.astype(np.float64) @ B.astype(np.float64)) if A.dtype == np.float32 else A @ B
    LAUNCHES["gemm_beta1" if beta == 1.0 else "gemm"] = LAUNCHES.get("gemm_beta1" if beta == 1.0 else "gemm", 0) + 1
    if dtype == np.uint16:
        assert beta == 0.0, "cublas.matmul: no accumulation into bfloat16"
        out[...] = to_bf16((alpha * prod).astype(np.float32))
        return out
    out[...] = (alpha * prod + (beta * np.asarray(out) if beta != 0.0 else 0)).astype(out.dtype)
    return out


cublas.matmul = _matmul
cublas.bind_stream = lambda stream=None: None  # no handles to bind: the emulated matmul above needs none
