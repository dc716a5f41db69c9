"""The convolution passes of the DCGAN training step, version by version, beside PyTorch, in one run.

Each pass (Conv2d forward / data gradient / weight gradient, ConvTranspose2d the same) in these versions:

- v0: im2col (or col2im) kernels around a cuBLAS GEMM, FP32: production before the implicit GEMM
- v0t, v0b: the same with the GEMM on TF32 / BF16 tensor cores (cublasGemmEx compute types)
- v1-v4: implicit GEMM (kernels/gpu/conv_igemm.cu), 64 x 64 x 32 tiles, 4 warps: SIMT FP32 FMAs (exact
  FP32), split-TF32 (three TF32 mma.sync products per operand pair), TF32 mma.sync m16n8k8, BF16 mma.sync
  m16n8k16 (operands rounded to BF16 as the fragments are loaded)
- v5-v7: the same gathers with 128 x 128 x 16 tiles of 8 warps (64 x 128 x 16 of 4 warps when M <= 64):
  TF32, BF16, split-TF32
- v8, v9: v5's tiles copied by cp.async into a 3-deep (4-deep when M <= 64) shared-memory ring: TF32, BF16
- torch fp32 / torch tf32 / torch bf16: PyTorch (cuDNN) on the same tensors, TF32 off, on (its default for
  convolutions), and with bf16 tensors; the backward passes through aten.convolution_backward, one pass each

Validation: each version's output (allocated over NaN) against float64: tinygan's NumPy reference on small
odd shapes, and PyTorch's float64 convolution on the GPU for the DCGAN shapes (the NumPy reference would take
minutes there); the error is the relative norm ||got - want|| / ||want||, allowed 1e-5 at FP32 accuracy, 1e-3
for TF32, 1e-2 for BF16. A version that fails is reported and not timed.
Timing: as bench.dev.kernel_versions, ``--reps`` calls captured as one CUDA graph (PyTorch's with
torch.cuda.graph), its replays timed with CUDA events, medians of two passes of ``--rounds``.
Rates: useful FLOPs (2 * output pixels * Cout * Cin * kh * kw for every pass) over the time, against the
matrix peak of the same precision measured in this run (8192^3 torch.matmul).

    python -m bench.dev.igemm_versions --out DIR     # writes DIR/igemm_versions.md, .json and .log
    python -m bench.dev.igemm_versions --steps --skip v1,v2,v7 --out DIR   # what run 2 ran (+ the step)
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import math
import statistics
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from bench.harness import gpu_missing

# Allowed relative norm error by precision. Split-TF32 ("3xtf32") measured 1e-5 to 3e-5 on the long sums
# of the first run (tensor-core accumulation), so it is held to 1e-4 and cannot stand in for "fp32".
TOL = {"fp32": 1e-5, "3xtf32": 1e-4, "tf32": 1e-3, "bf16": 1e-2}


@dataclasses.dataclass(frozen=True)
class Layer:
    name: str
    kind: str  # "conv" or "convT"
    x_shape: tuple[int, int, int, int]  # the layer's input
    cout: int
    k: int
    s: int
    p: int
    op: int = 0  # output_padding (convT)

    def out_shape(self) -> tuple[int, int, int, int]:
        n, _, h, w = self.x_shape
        if self.kind == "conv":
            return n, self.cout, (h + 2 * self.p - self.k) // self.s + 1, (w + 2 * self.p - self.k) // self.s + 1
        return (
            n,
            self.cout,
            (h - 1) * self.s - 2 * self.p + self.k + self.op,
            (w - 1) * self.s - 2 * self.p + self.k + self.op,
        )

    def w_shape(self) -> tuple[int, int, int, int]:
        cin = self.x_shape[1]
        return (self.cout, cin, self.k, self.k) if self.kind == "conv" else (cin, self.cout, self.k, self.k)

    def flops(self) -> float:
        # conv: output pixels x Cout x Cin k k; convT: input pixels x Cin x Cout k k
        n, cin, h, w = self.x_shape
        pixels = n * (self.out_shape()[2] * self.out_shape()[3] if self.kind == "conv" else h * w)
        return 2.0 * pixels * cin * self.cout * self.k * self.k


DCGAN = [
    Layer("D conv1 3->64 32x32 k3s1", "conv", (256, 3, 32, 32), 64, 3, 1, 1),
    Layer("D conv2 64->128 32->16 k3s2", "conv", (256, 64, 32, 32), 128, 3, 2, 1),
    Layer("D conv3 128->128 16->8 k3s2", "conv", (256, 128, 16, 16), 128, 3, 2, 1),
    Layer("D conv4 128->32 8->4 k3s2", "conv", (256, 128, 8, 8), 32, 3, 2, 1),
    Layer("G convT1 128->128 4->8 k5s2", "convT", (128, 128, 4, 4), 128, 5, 2, 2, 1),
    Layer("G convT2 128->64 8->16 k5s2", "convT", (128, 128, 8, 8), 64, 5, 2, 2, 1),
    Layer("G convT3 64->3 16->32 k5s2", "convT", (128, 64, 16, 16), 3, 5, 2, 2, 1),
]
ODD = [
    Layer("odd conv 3->5 9x7 k3s2", "conv", (2, 3, 9, 7), 5, 3, 2, 1),
    Layer("odd conv 66->70 5x5 k3s1", "conv", (1, 66, 5, 5), 70, 3, 1, 1),
    Layer("odd conv 4->6 11x10 k5s3", "conv", (3, 4, 11, 10), 6, 5, 3, 2),
    Layer("odd convT 70->65 4x4 k5s2 op1", "convT", (2, 70, 4, 4), 65, 5, 2, 2, 1),
    Layer("odd convT 3->2 5x3 k3s3 op2", "convT", (1, 3, 5, 3), 2, 3, 3, 1, 2),
]
PASSES = ("forward", "backward data", "backward weight")


@dataclasses.dataclass
class Row:
    layer: str
    pas: str
    version: str
    precision: str
    ok: bool
    error: float
    median_us: float = math.nan
    passes_us: tuple = ()
    flops: float = 0.0
    note: str = ""


# -- the versions ---------------------------------------------------------------------------------


def ours(layer: Layer, pas: str, version: str):
    """fn(x, W, b, dy) -> output(s) of this pass, for a version of tinygan's."""
    from tinygan.kernels.gpu import conv_igemm as ig
    from tinygan.kernels.gpu._common import gemm
    from tinygan.kernels.gpu.conv2d import col2im_bias, im2col
    from tinygan.kernels.gpu.layout import channel_sum, cns_to_ncs, ncs_to_cns

    from tinygan import backend

    k, s, p = (layer.k, layer.k), (layer.s, layer.s), (layer.p, layer.p)
    kind = layer.kind
    out_shape = layer.out_shape()

    if version in ("v0", "v0t", "v0b"):
        precision = {"v0": "fp32", "v0t": "tf32", "v0b": "bf16"}[version]

        def conv_fwd(x, W, b):  # im2col + GEMM + layout (+ bias)
            cout = W.shape[0]
            cols = im2col(x, k, s, p)
            n, _, h, w = x.shape
            ho, wo = (h + 2 * p[0] - k[0]) // s[0] + 1, (w + 2 * p[1] - k[1]) // s[1] + 1
            return cns_to_ncs(gemm(W.reshape(cout, -1), cols), (n, cout, ho, wo), b)

        def conv_dgrad(dy, W, x_shape, b):  # GEMM + col2im (+ bias)
            dcols = gemm(W.reshape(W.shape[0], -1), ncs_to_cns(dy), transa=True)
            return col2im_bias(dcols, x_shape, k, s, p, b)

        def conv_wgrad(dy, x):  # im2col + GEMM
            cols = im2col(x, k, s, p)
            return gemm(ncs_to_cns(dy), cols, transb=True).reshape(dy.shape[1], x.shape[1], *k)

        def fn(x, W, b, dy):
            with backend.precision(precision):
                if kind == "conv":
                    if pas == "forward":
                        return conv_fwd(x, W, b)
                    if pas == "backward data":
                        return conv_dgrad(dy, W, x.shape, None)
                    return conv_wgrad(dy, x), channel_sum(dy)
                if pas == "forward":
                    return conv_dgrad(x, W, out_shape, b)
                if pas == "backward data":
                    return conv_fwd(dy, W, None)
                return conv_wgrad(x, dy), channel_sum(dy)

        return fn

    prec = {
        "v1": ig.SIMT,
        "v2": ig.X3TF32,
        "v3": ig.TF32,
        "v4": ig.BF16,
        "v5": ig.TF32,
        "v6": ig.BF16,
        "v7": ig.X3TF32,
        "v8": ig.TF32,
        "v9": ig.BF16,
    }[version]
    cfg = 0 if version in ("v1", "v2", "v3", "v4") else ig.AUTO if version in ("v5", "v6", "v7") else ig.AUTO_PIPE

    def fn(x, W, b, dy):
        if kind == "conv":
            if pas == "forward":
                return ig.fprop(x, W, b, s, p, out_shape[2:], prec, cfg)
            if pas == "backward data":
                return ig.dgrad(dy, W, x.shape, s, p, None, prec, cfg)
            return ig.wgrad(dy, x, k, s, p, True, prec, cfg)
        if pas == "forward":
            return ig.dgrad(x, W, out_shape, s, p, b, prec, cfg)
        if pas == "backward data":
            return ig.fprop(dy, W, None, s, p, x.shape[2:], prec, cfg)
        dW, _ = ig.wgrad(x, dy, k, s, p, False, prec, cfg)
        return dW, channel_sum(dy)

    return fn


def torch_fn(layer: Layer, pas: str, dtype_name: str):
    """fn(x, W, b, dy) on torch tensors -> output(s) of this pass."""
    import torch

    s, p, op = layer.s, layer.p, layer.op
    transposed = layer.kind == "convT"

    def fn(x, W, b, dy):
        if pas == "forward":
            if transposed:
                return torch.nn.functional.conv_transpose2d(x, W, b, s, p, op)
            return torch.nn.functional.conv2d(x, W, b, s, p)
        mask = [pas == "backward data", pas == "backward weight", pas == "backward weight"]
        gx, gw, gb = torch.ops.aten.convolution_backward(
            dy, x, W, [W.shape[1] if transposed else W.shape[0]], [s, s], [p, p], [1, 1], transposed, [op, op], 1, mask
        )
        return gx if pas == "backward data" else (gw, gb)

    return fn


# -- references -------------------------------------------------------------------------------------


def reference_numpy(layer: Layer, pas: str, x, W, b, dy):
    from tinygan.kernels import reference as R

    s, p = (layer.s, layer.s), (layer.p, layer.p)
    if layer.kind == "conv":
        if pas == "forward":
            return R.conv2d_forward(x, W, b, s, p)[0]
        if pas == "backward data":
            return R.conv2d_backward_data(dy, W, x.shape, s, p)
        _, cols = R.conv2d_forward(x, W, b, s, p)
        return R.conv2d_backward_weight(dy, cols, W.shape)
    if pas == "forward":
        return R.conv_transpose2d_forward(x, W, b, s, p, (layer.op, layer.op))
    if pas == "backward data":
        return R.conv_transpose2d_backward_data(dy, W, s, p)[0]
    return R.conv_transpose2d_backward_weight(dy, x, W.shape, s, p)


def reference_torch64(layer: Layer, pas: str, x, W, b, dy):
    import torch

    t = [torch.from_numpy(a).cuda() for a in (x, W, b, dy)]
    out = torch_fn(layer, pas, "float64")(*t)
    outs = out if isinstance(out, tuple) else (out,)
    res = tuple(o.cpu().numpy() for o in outs)
    return res if isinstance(out, tuple) else res[0]


def rel_error(got, want) -> float:
    import cupy

    gots = got if isinstance(got, tuple) else (got,)
    wants = want if isinstance(want, tuple) else (want,)
    if len(gots) != len(wants):
        return math.inf
    worst = 0.0
    for g, w in zip(gots, wants):
        if not isinstance(g, np.ndarray):
            g = cupy.asnumpy(g) if isinstance(g, cupy.ndarray) else g.detach().float().cpu().numpy()
        g = g.astype(np.float64)
        if g.shape != w.shape or not np.isfinite(g).all():
            return math.inf
        worst = max(worst, float(np.linalg.norm(g - w) / max(np.linalg.norm(w), 1e-300)))
    return worst


# -- timing -----------------------------------------------------------------------------------------


def time_cupy(fn, arg_sets, rounds: int, reps: int) -> list[float]:
    import cupy
    from tinygan.kernels.gpu import cublas

    stream = cupy.cuda.Stream(non_blocking=True)
    pool = cupy.cuda.MemoryPool()
    with stream:
        cublas.bind_stream(stream)  # its handle must exist before the capture (eager GEMMs use CuPy's)
        for a in arg_sets[:2]:
            fn(*a)
        stream.synchronize()
        with cupy.cuda.using_allocator(pool.malloc):
            stream.begin_capture()
            try:
                for j in range(reps):
                    fn(*arg_sets[j % len(arg_sets)])
            finally:
                graph = stream.end_capture()
        graph.upload(stream)
        graph.launch(stream)
        start, end = cupy.cuda.Event(), cupy.cuda.Event()
        out = []
        for _ in range(rounds):
            start.record()
            graph.launch(stream)
            end.record()
            end.synchronize()
            out.append(cupy.cuda.get_elapsed_time(start, end) * 1e3 / reps)
    del graph
    pool.free_all_blocks()
    return out


def time_torch(fn, arg_sets, rounds: int, reps: int) -> list[float]:
    import torch

    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for a in arg_sets[:2]:
            fn(*a)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for j in range(reps):
            fn(*arg_sets[j % len(arg_sets)])
    g.replay()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    out = []
    for _ in range(rounds):
        start.record()
        g.replay()
        end.record()
        end.synchronize()
        out.append(start.elapsed_time(end) * 1e3 / reps)
    del g
    return out


def measure_peaks() -> dict:
    import torch

    n = 8192
    peaks = {}
    for name, dtype, tf32 in (
        ("fp32", torch.float32, False),
        ("tf32", torch.float32, True),
        ("bf16", torch.bfloat16, True),
    ):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        a = torch.randn(n, n, device="cuda", dtype=dtype)
        b = torch.randn(n, n, device="cuda", dtype=dtype)
        for _ in range(2):
            a @ b
        torch.cuda.synchronize()
        best = math.inf
        for _ in range(5):
            st, en = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            st.record()
            a @ b
            en.record()
            en.synchronize()
            best = min(best, st.elapsed_time(en) / 1e3)
        peaks[name] = 2 * n**3 / best / 1e12
        del a, b
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.cuda.empty_cache()
    return peaks


IM2COL_VERSION = {"fp32": "v0", "tf32": "v0t", "bf16": "v0b"}
# What production's implicit route runs, by DEFAULT_CFG (AUTO: v5/v6, AUTO_PIPE: v8/v9; fp32: SIMT v1).
IMPLICIT_VERSIONS = {
    "AUTO": {"fp32": "v1", "tf32": "v5", "bf16": "v6"},
    "AUTO_PIPE": {"fp32": "v1", "tf32": "v8", "bf16": "v9"},
}


def best_cfg(rows: list[Row]) -> str:
    """The tile configuration whose TF32 and BF16 versions took less time summed over the DCGAN passes."""
    total = {}
    for name, versions in IMPLICIT_VERSIONS.items():
        vs = {versions["tf32"], versions["bf16"]}
        times = [r.median_us for r in rows if r.version in vs and not r.layer.startswith("odd")]
        ok = all(r.ok for r in rows if r.version in vs)
        total[name] = sum(times) if ok and times and not any(math.isnan(t) for t in times) else math.inf
    return min(total, key=total.get)


def op_name(layer: Layer, pas: str) -> str:
    prefix = "conv2d" if layer.kind == "conv" else "conv_transpose2d"
    return f"{prefix}_{pas.replace(' ', '_')}"


def best_route(rows: list[Row], cfg_name: str) -> dict[str, dict[str, int]]:
    """For each precision, the ops whose implicit-GEMM kernel took less time than im2col + cuBLAS summed
    over the DCGAN layers (both validated): the ROUTE table this run measured to be fastest."""
    route: dict[str, dict[str, int]] = {}
    by = {(r.layer, r.pas, r.version): r for r in rows if r.ok and not math.isnan(r.median_us)}
    for precision in ("fp32", "tf32", "bf16"):
        totals: dict[str, list[float]] = {}
        for layer in DCGAN:
            for pas in PASSES:
                a = by.get((layer.name, pas, IM2COL_VERSION[precision]))
                b = by.get((layer.name, pas, IMPLICIT_VERSIONS[cfg_name][precision]))
                if a is None or b is None:
                    continue
                t = totals.setdefault(op_name(layer, pas), [0.0, 0.0])
                t[0] += a.median_us
                t[1] += b.median_us
        route[precision] = {op: 0 for op, (im2col, implicit) in totals.items() if implicit < im2col}
    return route


def time_steps(
    steps_n: int = 100, measured: dict | None = None, cfg_name: str = "AUTO"
) -> list[tuple[str, float, str]]:
    """The DCGAN training step (batch 128) as one CUDA graph: tinygan at each precision, PyTorch in FP32
    and at its default (cuDNN TF32 convolutions, FP32 matmuls). Median ms of ``steps_n`` replays, 10 at a time."""
    import cupy
    import torch

    from bench import steps
    from tinygan import backend

    out = []

    def timed(built, label, what):
        stream = built.stream
        for _ in range(5):
            built.fn()
        if stream is not None:
            stream.synchronize()
        torch.cuda.synchronize()
        cupy.cuda.Device().synchronize()
        per = []
        for _ in range(steps_n // 10):
            if stream is not None:
                st, en = cupy.cuda.Event(), cupy.cuda.Event()
                st.record(stream)
                for _ in range(10):
                    built.fn()
                en.record(stream)
                en.synchronize()
                per.append(cupy.cuda.get_elapsed_time(st, en) / 10)
            else:
                st, en = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                st.record()
                for _ in range(10):
                    built.fn()
                en.record()
                en.synchronize()
                per.append(st.elapsed_time(en) / 10)
        ms = statistics.median(per)
        out.append((label, ms, what))
        print(f"DCGAN step {label:26s} {ms:7.3f} ms  ({what})", flush=True)

    from tinygan.kernels.gpu import conv_igemm

    conv_igemm.DEFAULT_CFG = getattr(conv_igemm, cfg_name)
    production = conv_igemm.ROUTE
    routes = {"all im2col": {p: {} for p in production}}
    if measured is not None:
        routes["measured best"] = measured
    else:
        routes["all implicit"] = {p: {op: 0 for op in conv_igemm.OPS} for p in production}
    for precision in ("fp32", "tf32", "bf16"):
        for route_name, route in routes.items():
            if route_name != "all im2col" and not route[precision]:
                continue  # the same as all im2col at this precision
            try:
                conv_igemm.ROUTE = route
                with backend.precision(precision):
                    built = steps.tiny_gpu_step("dcgan", 128, graph=True)
                    timed(built, f"tinygan {precision}, {route_name}", built.how)
                    del built
            except Exception as exc:
                print(f"DCGAN step tinygan {precision} {route_name}: {type(exc).__name__}: {exc}", flush=True)
                traceback.print_exc()
            finally:
                conv_igemm.ROUTE = production
    for label, precision in (("torch fp32", "fp32"), ("torch default (TF32 conv)", "default")):
        try:
            built = steps.torch_graph_step("dcgan", 128, precision=precision)
            timed(built, label, built.how)
            del built
        except Exception as exc:
            print(f"DCGAN step {label}: {type(exc).__name__}: {exc}", flush=True)
    torch.backends.cudnn.allow_tf32 = True
    return out


VERSIONS = [
    ("v0", "fp32", "im2col/col2im + cuBLAS GEMM, FP32 (production before)"),
    ("v0t", "tf32", "im2col/col2im + cuBLAS GEMM on TF32 tensor cores"),
    ("v0b", "bf16", "im2col/col2im + cuBLAS GEMM, CUBLAS_COMPUTE_32F_FAST_16BF"),
    ("v1", "fp32", "implicit GEMM 64x64x32 tiles, 4 warps, SIMT FP32"),
    ("v2", "3xtf32", "implicit GEMM 64x64x32, split-TF32 (3 mma.sync)"),
    ("v3", "tf32", "implicit GEMM 64x64x32, TF32 mma.sync m16n8k8"),
    ("v4", "bf16", "implicit GEMM 64x64x32, BF16 mma.sync m16n8k16"),
    ("v5", "tf32", "implicit GEMM 128x128x16 (8 warps of 64x32; 64x128 for M <= 64), TF32"),
    ("v6", "bf16", "implicit GEMM 128x128x16 / 64x128x16, BF16"),
    ("v7", "3xtf32", "implicit GEMM 128x128x16 / 64x128x16, split-TF32"),
    ("v8", "tf32", "v5 with cp.async into a 3-deep (4 for M <= 64) shared-memory ring, TF32"),
    ("v9", "bf16", "v8 with BF16 mma.sync"),
    ("torch-fp32", "fp32", "PyTorch/cuDNN, allow_tf32 False"),
    ("torch-tf32", "tf32", "PyTorch/cuDNN at its default (TF32 convolutions)"),
    ("torch-bf16", "bf16", "PyTorch/cuDNN on bf16 tensors"),
]


def run_layer(layer: Layer, rng, rounds: int, reps: int, timed: bool, log, skip: frozenset = frozenset()) -> list[Row]:
    import cupy
    import torch

    x = rng.standard_normal(layer.x_shape).astype(np.float32)
    W = (rng.standard_normal(layer.w_shape()) / math.sqrt(layer.x_shape[1] * layer.k * layer.k)).astype(np.float32)
    b = rng.standard_normal(layer.cout).astype(np.float32)
    dy = rng.standard_normal(layer.out_shape()).astype(np.float32)
    host = (x, W, b, dy)
    h64 = tuple(a.astype(np.float64) for a in host)
    nbytes = sum(a.nbytes for a in host)
    copies = max(1, min(4, math.ceil(64 * 2**20 / nbytes))) if timed else 1
    sets = [host] + [
        tuple(
            a
            for a in (
                rng.standard_normal(layer.x_shape).astype(np.float32),
                W,
                b,
                rng.standard_normal(layer.out_shape()).astype(np.float32),
            )
        )
        for _ in range(copies - 1)
    ]
    cp_sets = [tuple(cupy.asarray(a) for a in st) for st in sets]
    rows = []
    for pas in PASSES:
        want = (reference_torch64 if timed else reference_numpy)(layer, pas, *h64)
        for version, precision, _ in VERSIONS:
            if timed and version in skip:
                continue
            row = Row(layer.name, pas, version, precision, False, math.inf, flops=layer.flops())
            try:
                if version.startswith("torch"):
                    dt_ = torch.bfloat16 if precision == "bf16" else torch.float32
                    torch.backends.cudnn.allow_tf32 = precision == "tf32"
                    fn = torch_fn(layer, pas, precision)
                    t_sets = [tuple(torch.from_dlpack(a).to(dt_) for a in st) for st in cp_sets]
                    got = fn(*t_sets[0])
                    row.error = rel_error(got, want)
                    row.ok = row.error <= TOL[precision]
                    if row.ok and timed:
                        times = [time_torch(fn, t_sets, rounds, reps) for _ in range(2)]
                else:
                    fn = ours(layer, pas, version)
                    blocks = [cupy.full(max(nbytes, 1 << 20), 0xFF, dtype=cupy.uint8) for _ in range(2)]
                    del blocks  # outputs allocated next start as NaN
                    got = fn(*cp_sets[0])
                    cupy.cuda.Device().synchronize()
                    row.error = rel_error(got, want)
                    row.ok = row.error <= TOL[precision]
                    if row.ok and timed:
                        times = [time_cupy(fn, cp_sets, rounds, reps) for _ in range(2)]
                if row.ok and timed:
                    row.median_us = statistics.median([t for one in times for t in one])
                    row.passes_us = tuple(statistics.median(one) for one in times)
            except Exception as exc:  # one broken version must not stop the others
                row.note = f"{type(exc).__name__}: {exc}"
                log.write(traceback.format_exc() + "\n")
            rows.append(row)
            msg = f"{layer.name:32s} {pas:16s} {version:10s} err {row.error:.1e} " + (
                f"{row.median_us:9.1f} us" if row.ok and timed else ("ok" if row.ok else f"WRONG {row.note}")
            )
            print(msg, flush=True)
            log.write(msg + "\n")
            log.flush()
        torch.backends.cudnn.allow_tf32 = True
    del cp_sets
    cupy.get_default_memory_pool().free_all_blocks()
    torch.cuda.empty_cache()
    return rows


def render(rows: list[Row], peaks: dict, header: str) -> str:
    versions = [v for v, _, _ in VERSIONS]
    lines = [header, ""]
    lines += [f"- {v} ({p}): {what}" for v, p, what in VERSIONS]
    lines += ["", "Median µs per call (CUDA-graph replays); `x` = failed validation, `-` = not timed.", ""]
    lines += [
        "| layer | pass | " + " | ".join(versions) + " |",
        "| --- | --- | " + " | ".join("---:" for _ in versions) + " |",
    ]
    sums = dict.fromkeys(versions, 0.0)
    for key in dict.fromkeys((r.layer, r.pas) for r in rows):
        cells = []
        for v in versions:
            r = next((r for r in rows if (r.layer, r.pas) == key and r.version == v), None)
            if r is None or not r.ok:
                cells.append("x")
                sums[v] = math.nan
            elif math.isnan(r.median_us):
                cells.append("-")
            else:
                cells.append(f"{r.median_us:,.1f}")
                sums[v] += r.median_us
        lines.append(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + " |")
    lines.append("| **sum** | | " + " | ".join(f"**{sums[v]:,.0f}**" for v in versions) + " |")
    lines += [
        "",
        "Rate (TFLOP/s) and % of the measured matrix peak of the version's precision; max relative norm error:",
        "",
    ]
    lines += [
        "| layer | pass | version | TFLOP/s | % of peak | rel. error |",
        "| --- | --- | --- | ---: | ---: | ---: |",
    ]
    for r in rows:
        if r.ok and not math.isnan(r.median_us):
            rate = r.flops / (r.median_us * 1e-6) / 1e12
            share = 100 * rate / peaks[r.precision]
            lines.append(f"| {r.layer} | {r.pas} | {r.version} | {rate:,.1f} | {share:.1f}% | {r.error:.1e} |")
        elif not r.ok:
            lines.append(f"| {r.layer} | {r.pas} | {r.version} | wrong | | {r.error:.1e} {r.note[:80]} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--out", type=Path, default=Path("."))
    ap.add_argument("--layers", default="", help="comma-separated substrings of layer names to run (default all)")
    ap.add_argument("--steps", action="store_true", help="also time the whole DCGAN training step (CUDA graph)")
    ap.add_argument("--skip", default="", help="comma-separated versions to validate on the odd shapes only")
    args = ap.parse_args(argv)

    if gpu_missing("igemm_versions"):
        return 2
    try:
        import torch
    except ImportError:
        print(
            "igemm_versions needs PyTorch (the comparison and the float64 reference of the DCGAN shapes)",
            file=sys.stderr,
        )
        return 2
    import cupy

    args.out.mkdir(parents=True, exist_ok=True)
    log = open(args.out / "igemm_versions.log", "w")
    t0 = time.time()
    card = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    from tinygan.kernels.gpu import conv_igemm

    conv_igemm._MOD.get("ig_splitk_reduce")  # compile every instantiation once, timed
    print(f"{card}: compiled conv_igemm.cu in {time.time() - t0:.1f} s", flush=True)
    peaks = measure_peaks()
    peaks["3xtf32"] = peaks["fp32"]  # useful FLOPs against the FP32 peak
    print("measured matrix peaks (TFLOP/s): " + ", ".join(f"{k} {v:.0f}" for k, v in peaks.items()), flush=True)
    rng = np.random.default_rng(0)
    rows: list[Row] = []
    for layer in ODD:
        rows += run_layer(layer, rng, args.rounds, args.reps, False, log)
    wanted = [s for s in args.layers.split(",") if s]
    for layer in DCGAN:
        if wanted and not any(w in layer.name for w in wanted):
            continue
        rows += run_layer(layer, rng, args.rounds, args.reps, True, log, frozenset(args.skip.split(",")))
    header = (
        f"# Implicit-GEMM convolution versions: {card}, {dt.date.today().isoformat()}\n\n"
        f"`python -m bench.dev.igemm_versions` ({args.rounds} rounds of {args.reps} calls, two passes), "
        f"CuPy {cupy.__version__}, torch {torch.__version__} (cuDNN {torch.backends.cudnn.version()}). "
        "Matrix peaks measured here (torch.matmul 8192³): "
        + ", ".join(f"{k} {v:,.0f} TFLOP/s" for k, v in peaks.items())
        + ". Odd shapes validated against tinygan's NumPy float64 reference, DCGAN shapes against PyTorch float64."
    )
    cfg_name = best_cfg(rows)
    measured = best_route(rows, cfg_name)
    print(f"measured best: DEFAULT_CFG {cfg_name}, ROUTE " + json.dumps(measured), flush=True)
    step_times = time_steps(measured=measured, cfg_name=cfg_name) if args.steps else []
    text = render([r for r in rows if not r.layer.startswith("odd")], peaks, header)
    if step_times:
        text += "\n\n## DCGAN training step, batch 128, one CUDA graph\n\n"
        text += "| implementation | median ms | how |\n| --- | ---: | --- |\n"
        text += "\n".join(f"| {label} | {ms:.3f} | {what} |" for label, ms, what in step_times)
    text += f"\n\nMeasured fastest: DEFAULT_CFG {cfg_name}, ROUTE (ops on the implicit-GEMM kernels) `"
    text += json.dumps(measured) + "`"
    odd_bad = [r for r in rows if r.layer.startswith("odd") and not r.ok]
    text += "\n\nOdd shapes: " + (
        "every version validated."
        if not odd_bad
        else "FAILED: " + "; ".join(f"{r.layer} {r.pas} {r.version} {r.error:.1e} {r.note[:60]}" for r in odd_bad)
    )
    (args.out / "igemm_versions.md").write_text(text + "\n")
    (args.out / "igemm_versions.json").write_text(
        json.dumps({"card": card, "peaks": peaks, "rows": [dataclasses.asdict(r) for r in rows]}, indent=1)
    )
    print("\n" + text)
    print(f"total {time.time() - t0:.0f} s")
    return 0 if all(r.ok for r in rows if not r.version.startswith("torch")) else 1


if __name__ == "__main__":
    sys.exit(main())
