"""The Dense layers' FP32 products, version by version, on the dense MNIST GAN's shapes (issue 11, item 3).

Each of the step's products (forward with bias and ReLU; input gradient; weight gradient added into its
buffer), validated against a float64 product before it is timed, as ``bench/dev/kernel_versions.py`` does
(its ``validate`` and ``time_version``: outputs over NaN, then ``--reps`` calls captured as one CUDA graph and
its replays timed with CUDA events):

- v1 (production until the twelfth session): cuBLAS through ctypes (``cublas.matmul``; the forward's bias and
  activation as ``add_bias_``, one more launch; the weight gradient a beta = 1 GEMM, ``matmul_accumulate``).
- v2: ``dense_gemm`` (kernels/gpu/dense_gemm.cu) without a split: 32 x 64 tiles, 4 x 4 outputs a thread,
  the epilogue fused.
- v3 (production for the forward): ``dense_gemm`` with the sum split over a thread-block cluster of
  ``splits_for``'s size.
- v5: v3 with its tiles copied global -> shared by cp.async into a ring of 4 buffers (3 tiles in flight), at
  each split (v5s1 .. v5s8) and at ``splits_for``'s. Prediction (after v3's first run: 10-25% of the sgemm rate,
  where cuBLAS gets 20-48%, and v2 unsplit at 23% of one SM's FP32 rate with one block an SM): v3's loads are
  one tile ahead through registers, and a tile's 256 FMAs a thread do not cover an L2 round trip, so its warps
  wait; three tiles in flight should cover it, 1.5-2x v3 on the large products.
- v6: v5 on 64 x 64 tiles, 8 x 4 outputs a thread (cuBLAS's choice for these shapes, 64x64x8 with 3 stages,
  which it cannot split enough): 3 LDS.128 for 32 FMAs instead of 2 for 16, three buffers; v7 the same tile
  staged through registers. Prediction: v6 1.2-1.5x v5 where the split still fills the SMs.

And each Dense layer's whole backward pass in the step (dx, dW, db from dy, x, W and the fused output y):

- v1 (production until the twelfth session): dz and db in one pass (``rows_grad_sum``), then cuBLAS's two
  products on two streams.
- v3: the same with ``dense_gemm``'s products; v5 the same by cp.async; v6 on 64 x 64 tiles.
- production: kernels/gpu/dense.py's ``dense_backward``, the plan's products.
- (v4 and v7, twelfth session: no dz in memory, both products forming dz = dy * act'(y) as they loaded dy's
  tiles and the weight product summing db. Never faster than v5 (D dense4 6.2 against 6.2 us, G dense1 8.1
  against 7.5: reading y beside dy in every tile costs what the pass saved), so they left dense_gemm in the
  thirteenth session; bench/results/dense-gemm-2026-12-03.md keeps their figures.)

Prediction (twelfth session, before any run): cuBLAS takes 23 us for the 125 x 784 x 1024 forward, 9 TFLOP/s
(the ninth session's probe), with 32 blocks of 64 x 64 on 132 SMs. v3 gives that product 64 tiles of 32 x 64,
each split 8 ways (512 blocks); at half the per-SM FP32 rate it would take about 8 us, so 2-3x cuBLAS on the
forward and input-gradient products, and on the whole step about 150 us less (its products sum to about
360 us). v4: the 11 launches of ``rows_grad_sum`` (33 us in the step's profile) go, at the price of reading y
beside dy in both products.
The weight gradients (outputs up to 784 x 1024, sums of 125 or 250) already give cuBLAS enough blocks: there
v2/v3 should only match it.

    python -m bench.dev.dense_gemm_versions [--out dense.md]     # needs CuPy and a GPU

Rates: TFLOP/s (2 m n k per product) and their share of an 8192^3 cuBLAS sgemm measured in the same run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import gpu_missing

# (label, mode, m, k, n): the product op(a) (m x k) @ op(b) (k x n) of one Dense layer in the MNIST GAN's step.
# G runs at the batch (125), D at real + fake (250) in its own step and at 125 in G's.
MNIST_PRODUCTS = [
    ("G dense1 forward", "forward", 125, 100, 256),
    ("G dense2 forward", "forward", 125, 256, 512),
    ("G dense3 forward", "forward", 125, 512, 1024),
    ("G dense4 forward", "forward", 125, 1024, 784),
    ("D dense1 forward (D step)", "forward", 250, 784, 1024),
    ("D dense2 forward (D step)", "forward", 250, 1024, 512),
    ("D dense3 forward (D step)", "forward", 250, 512, 256),
    ("D dense4 forward (D step)", "forward", 250, 256, 1),
    ("D dense1 forward (G step)", "forward", 125, 784, 1024),
    ("D dense2 input grad (D step)", "input", 250, 512, 1024),
    ("D dense3 input grad (D step)", "input", 250, 256, 512),
    ("D dense4 input grad (D step)", "input", 250, 1, 256),
    ("D dense1 input grad (G step)", "input", 125, 1024, 784),
    ("G dense4 input grad", "input", 125, 784, 1024),
    ("G dense3 input grad", "input", 125, 1024, 512),
    ("G dense2 input grad", "input", 125, 512, 256),
    ("D dense1 weight grad", "weight", 784, 250, 1024),
    ("D dense2 weight grad", "weight", 1024, 250, 512),
    ("D dense3 weight grad", "weight", 512, 250, 256),
    ("D dense4 weight grad", "weight", 256, 250, 1),
    ("G dense1 weight grad", "weight", 100, 125, 256),
    ("G dense2 weight grad", "weight", 256, 125, 512),
    ("G dense3 weight grad", "weight", 512, 125, 1024),
    ("G dense4 weight grad", "weight", 1024, 125, 784),
]


# (label, batch, in, out, slope, input_grad, weight_grad): one Dense layer's whole backward pass in the step.
MNIST_BACKWARDS = [
    ("D dense1 (D step)", 250, 784, 1024, 0.0, False, True),
    ("D dense2 (D step)", 250, 1024, 512, 0.0, True, True),
    ("D dense3 (D step)", 250, 512, 256, 0.0, True, True),
    ("D dense4 (D step)", 250, 256, 1, None, True, True),
    ("D dense1 (G step)", 125, 784, 1024, 0.0, True, False),
    ("D dense2 (G step)", 125, 1024, 512, 0.0, True, False),
    ("G dense4", 125, 1024, 784, None, True, True),
    ("G dense3", 125, 512, 1024, 0.0, True, True),
    ("G dense1", 125, 100, 256, 0.0, False, True),
]


def make_backward(batch: int, fin: int, fout: int, slope, weight_grad: bool, rng: np.random.Generator) -> tuple:
    """(dy, x, W, y, dW0, db0); y is the fused forward's output (half of it at 0 or below)."""

    def normal(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32)

    y = normal(batch, fout)
    if slope is not None:
        y = np.where(y > 0, y, np.float32(slope) * y).astype(np.float32)
    dW0, db0 = (normal(fin, fout), normal(fout)) if weight_grad else (None, None)
    return normal(batch, fout), normal(batch, fin), normal(fin, fout) / np.float32(math.sqrt(fin)), y, dW0, db0


def reference_backward(args: tuple, slope, input_grad: bool) -> tuple:
    dy, x, W, y, dW0, db0 = args
    dz = dy if slope is None else np.where(y > 0, dy, slope * dy)
    out = (dz @ W.T,) if input_grad else ()
    if dW0 is not None:
        out += (dW0 + x.T @ dz, db0 + dz.sum(axis=0))
    return out


def backward_versions(slope, input_grad: bool) -> list[tuple[str, str, Callable[..., Any]]]:
    import tinygan.kernels.gpu as K
    from tinygan.kernels.gpu import cublas
    from tinygan.kernels.gpu._common import capture_gemm
    from tinygan.kernels.gpu.dense_gemm import dense_gemm
    from tinygan.kernels.gpu.layout import rows_grad_sum
    from tinygan.kernels.gpu.streams import fork_join

    def composed(own: bool, pipeline: str = "registers", tile: str = "32x64") -> Callable[..., Any]:
        def backward(dy, x, W, y, dW, db):
            dz = rows_grad_sum(dy, y, slope, db)
            dx = None
            with fork_join() as side:
                if dW is not None:
                    with side:
                        if own:
                            dense_gemm(x, dz, trans_a=True, out=dW, pipeline=pipeline, tile=tile)
                        else:
                            cublas.matmul_accumulate(dW, x, dz, transa=True)
                if input_grad:
                    if own:
                        dx = dense_gemm(dz, W, trans_b=True, pipeline=pipeline, tile=tile)
                    else:
                        dx = cublas.matmul(dz, W, transb=True)
            return ((dx,) if input_grad else ()) + ((dW, db) if dW is not None else ())

        return backward

    def production(dy, x, W, y, dW, db):
        # As the training step does: every cuBLAS call through the ctypes handle, eager or captured.
        with capture_gemm():
            dx = K.dense_backward(dy, x, W, y=y, slope=slope, dW=dW, db=db, input_grad=input_grad)
        return ((dx,) if input_grad else ()) + ((dW, db) if dW is not None else ())

    return [
        ("v1", "dz and db by rows_grad_sum, then cuBLAS (production until the twelfth session)", composed(False)),
        ("v3", "dz and db by rows_grad_sum, then dense_gemm's products", composed(True)),
        ("v5", "dz and db by rows_grad_sum, then dense_gemm's products by cp.async", composed(True, "async")),
        ("v6", "v5 on 64 x 64 tiles", composed(True, "async", "64x64")),
        ("production", "kernels/gpu/dense.py's dense_backward (the plan's products)", production),
    ]


def make_case(mode: str, m: int, k: int, n: int, rng: np.random.Generator) -> tuple:
    """Host inputs of one product: forward (x, W, b), input (dz, W), weight (x, dz, dW0)."""

    def normal(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32)

    if mode == "forward":
        return normal(m, k), normal(k, n) / np.float32(math.sqrt(k)), normal(n)
    if mode == "input":  # dx (m, n) = dz (m, k) @ W.T with W of shape (n, k)
        return normal(m, k), normal(n, k) / np.float32(math.sqrt(k))
    return normal(k, m), normal(k, n), normal(m, n)  # dW (m, n) += x (k, m).T @ dz (k, n)


def reference(mode: str, args: tuple) -> np.ndarray:
    if mode == "forward":
        x, W, b = args
        return np.maximum(x @ W + b, 0.0)
    if mode == "input":
        dz, W = args
        return dz @ W.T
    x, dz, dW0 = args
    return dW0 + x.T @ dz


def versions(mode: str) -> list[tuple[str, str, Callable[..., Any]]]:
    from tinygan.kernels.gpu import cublas
    from tinygan.kernels.gpu.dense_gemm import dense_gemm
    from tinygan.kernels.gpu.layout import add_bias_

    def own(splits: int | None, pipeline: str = "registers", tile: str = "32x64") -> Callable[..., Any]:
        how = {"splits": splits, "pipeline": pipeline, "tile": tile}

        def product(*args):
            if mode == "forward":
                x, W, b = args
                return dense_gemm(x, W, bias=b, slope=0.0, **how)
            if mode == "input":
                dz, W = args
                return dense_gemm(dz, W, trans_b=True, **how)
            x, dz, dW = args
            return dense_gemm(x, dz, trans_a=True, out=dW, **how)

        return product

    def v1(*args):
        if mode == "forward":
            x, W, b = args
            return add_bias_(cublas.matmul(x, W), b, 0.0)
        if mode == "input":
            dz, W = args
            return cublas.matmul(dz, W, transb=True)
        x, dz, dW = args
        cublas.matmul_accumulate(dW, x, dz, transa=True)
        return dW

    return [
        ("v1", "cuBLAS (ctypes), the bias and ReLU a second launch", v1),
        ("v2", "dense_gemm, 32 x 64 tiles, no split", own(1)),
        ("v3", "dense_gemm, the sum split over a cluster (splits_for)", own(None)),
        *[(f"v5s{s}", f"v3 by cp.async, split {s}", own(s, "async")) for s in (1, 2, 4, 8)],
        ("v5", "dense_gemm by cp.async, split by splits_for", own(None, "async")),
        *[(f"v6s{s}", f"v5, 64 x 64 tiles, 8 x 4 a thread, split {s}", own(s, "async", "64x64")) for s in (1, 2, 4, 8)],
        ("v6", "v5 on 64 x 64 tiles, split by splits_for", own(None, "async", "64x64")),
        ("v7", "v3 on 64 x 64 tiles (registers), split by splits_for", own(None, "registers", "64x64")),
    ]


def run(rounds: int, reps: int, tolerance: float, seed: int = 0) -> tuple[list[dict], float]:
    import cupy
    from tinygan.kernels.gpu.dense_gemm import CLUSTER_CC, device_capability, splits_for

    from bench.dev.kernel_versions import Version, time_version, to_device, validate
    from bench.harness import measure_peak

    peak = measure_peak("gpu", quick=True)["gemm_gflops"] / 1e3  # the best of an 8192^3 cuBLAS sgemm
    sms, cc = device_capability()
    clusters = cc >= CLUSTER_CC
    rng = np.random.default_rng(seed)
    rows = []
    cases = []
    for label, mode, m, k, n in MNIST_PRODUCTS:
        make = lambda rng, mode=mode, m=m, k=k, n=n: make_case(mode, m, k, n, rng)  # noqa: E731
        check = lambda host, mode=mode: reference(mode, host)  # noqa: E731
        cases.append((f"{label}: {m} x {k} x {n}", make, check, versions(mode), 2 * m * n * k, (m, n, k)))
    for label, batch, fin, fout, slope, input_grad, weight_grad in MNIST_BACKWARDS:
        make = lambda rng, b=batch, i=fin, o=fout, s=slope, w=weight_grad: make_backward(b, i, o, s, w, rng)  # noqa: E731
        check = lambda host, s=slope, g=input_grad: reference_backward(host, s, g)  # noqa: E731
        flops = 2 * batch * fin * fout * (int(input_grad) + int(weight_grad))
        what = f"backward {label}: batch {batch}, {fin} -> {fout}" + ("" if input_grad else ", no dx")
        cases.append(
            (what + ("" if weight_grad else ", no dW"), make, check, backward_versions(slope, input_grad), flops, None)
        )
    for label, make, check, case_versions, flops, mnk in cases:
        host = make(rng)
        want = check(tuple(a.astype(np.float64) if isinstance(a, np.ndarray) else a for a in host))
        arg_sets = [to_device(host)] + [to_device(make(rng)) for _ in range(3)]
        found = []
        for name, what, fn in case_versions:
            version = Version(name, what, fn)
            ok, error = validate(version, host, want, tolerance)
            found.append([version, ok, error, []])
        for _ in range(2):  # two passes: their spread is the noise floor
            for entry in found:
                if entry[1]:
                    entry[3].append(time_version(entry[0], arg_sets, rounds, reps))
        for version, ok, error, passes in found:
            every = [t for p in passes for t in p]
            median = statistics.median(every) if ok else math.nan
            row = {
                "case": label,
                "version": version.name,
                "what": version.what,
                "ok": ok,
                "error": error,
                "median_us": median,
                "passes": [statistics.median(p) for p in passes],
                "tflops": flops / (median * 1e-6) / 1e12 if ok else math.nan,
                "splits": (
                    splits_for(*mnk, sms, clusters, 64 if version.name in ("v6", "v7") else 32)
                    if version.name in ("v3", "v5", "v6", "v7") and mnk
                    else ""
                ),
            }
            rows.append(row)
            print(
                f"  {row['case']:60s} {version.name} "
                + (f"{median:8.1f} us {row['tflops']:6.1f} TFLOP/s" if ok else f"WRONG (error {error:.2e})"),
                flush=True,
            )
        del arg_sets
        cupy.get_default_memory_pool().free_all_blocks()
    return rows, peak


def render(rows: list[dict], peak: float, header: str) -> str:
    lines = [header, ""]
    names = list(dict.fromkeys(r["version"] for r in rows))
    for v in names:
        lines.append(f"- {v}: {next(r['what'] for r in rows if r['version'] == v)}")
    lines += [
        "",
        "| product | version | median µs | passes µs | TFLOP/s | % of sgemm | vs v1 | split | max rel. error |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    total = dict.fromkeys(names, 0.0)
    for case in dict.fromkeys(r["case"] for r in rows):
        case_rows = [r for r in rows if r["case"] == case]
        base = case_rows[0]
        for r in case_rows:
            if not r["ok"]:
                lines.append(f"| {case} | {r['version']} | **wrong** | | | | | | {r['error']:.1e} |")
                continue
            total[r["version"]] += r["median_us"]
            lines.append(
                f"| {case} | {r['version']} | {r['median_us']:.1f} | "
                f"{' / '.join(f'{p:.1f}' for p in r['passes'])} | {r['tflops']:.1f} | "
                f"{100 * r['tflops'] / peak:.0f}% | {base['median_us'] / r['median_us']:.2f}x | {r['splits']} | "
                f"{r['error']:.1e} |"
            )
    lines += ["", "Sum over the step's products: " + ", ".join(f"{v} {t:,.1f} µs" for v, t in total.items()), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, default=15, help="timed rounds per version and pass (default 15)")
    parser.add_argument("--reps", type=int, default=20, help="calls per captured graph (default 20)")
    parser.add_argument("--tolerance", type=float, default=1e-5, help="largest relative error (default 1e-5)")
    parser.add_argument("--out", type=Path, help="also write the table as Markdown here")
    args = parser.parse_args(argv)
    from tinygan.backend import set_precision

    if gpu_missing("dense_gemm_versions"):
        return 2
    import cupy

    set_precision("fp32")
    card = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)["name"].decode()
    rows, peak = run(args.rounds, args.reps, args.tolerance)
    header = (
        f"# Dense FP32 products: {card}, {dt.date.today().isoformat()}\n\n"
        f"`python -m bench.dev.dense_gemm_versions` ({args.rounds} rounds x 2 passes of {args.reps} calls in a "
        f"captured graph), CuPy {cupy.__version__}. FP32 sgemm peak measured here (cuBLAS, 8192^3): "
        f"{peak:.1f} TFLOP/s. Every version was checked against a float64 product first."
    )
    text = render(rows, peak, header)
    print("\n" + text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
