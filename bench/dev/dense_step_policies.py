"""The dense MNIST GAN's fp32 training step under each way of running its Dense products, side by side.

``kernels/gpu/dense.py`` decides per product (``plan_product``: cuBLAS or ``dense_gemm`` with a tile and a
pipeline). This script swaps that function for each policy below, captures the whole step as a CUDA graph (as
training runs it), checks its gradients against the float64 reference step (``bench.steps.validate_tiny``), and
times the policies in interleaved rounds, so that the per-product timings of ``dense_gemm_versions.py`` are
checked where they matter: the step, with the two streams and everything else around the products.

``no-products`` is not a way to train: every product is replaced by a zero fill of its output (the weight
gradients by nothing), so its gradients are meaningless and not checked. It times everything else in the step,
launches included: the part of the step that faster products cannot remove.

    python -m bench.dev.dense_step_policies [--rounds 5] [--replays 200]    # needs CuPy and a GPU
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
from collections.abc import Callable, Iterator
from typing import Any

from bench.harness import gpu_missing

POLICIES: dict[str, tuple[str, Callable[..., Any] | None]] = {
    # name: (what, plan_product); None keeps production's
    "cublas": ("every product on cuBLAS (the eleventh session's step)", lambda *a: None),
    "v3": ("32 x 64 tiles through registers", lambda *a: {"tile": "32x64"}),
    "v5": ("32 x 64 tiles by cp.async", lambda *a: {"tile": "32x64", "pipeline": "async"}),
    "v6": ("64 x 64 tiles by cp.async", lambda *a: {"tile": "64x64", "pipeline": "async"}),
    "production": ("kernels/gpu/dense.py's own plan", None),
    # Production's plan with one kind of product moved (fourteenth session: measured in isolation, the plan's
    # thresholds may not hold once a model's backward joins its side stream once, streams.deferred_joins).
    "input-v6": ("production, every input gradient on 64 x 64 tiles", lambda *a: _only("input", "64x64", *a)),
    "input-v5": ("production, every input gradient on 32 x 64 tiles", lambda *a: _only("input", "32x64", *a)),
    "weight-v6": ("production, every weight gradient on 64 x 64 tiles", lambda *a: _only("weight", "64x64", *a)),
    "forward-v5": ("production, every forward on 32 x 64 tiles", lambda *a: _only("forward", "32x64", *a)),
    "no-products": ("every product a zero fill of its output: the step without its products' arithmetic", None),
}


_PRODUCTION: list[Callable[..., Any]] = []  # kernels/gpu/dense.py's plan_product, set by build()


def _only(kind: str, tile: str, what: str, m: int, n: int, k: int) -> dict[str, Any] | None:
    """dense_gemm on ``tile`` by cp.async for every product of ``kind``, production's choice for the others."""
    return {"tile": tile, "pipeline": "async"} if what == kind else _PRODUCTION[0](what, m, n, k)


@contextlib.contextmanager
def _without_products(dense: Any) -> Iterator[None]:
    """dense.py's three product calls replaced by a zero fill of the output (one memset, no arithmetic)."""
    import cupy

    def fill(a, b, trans_a=False, trans_b=False, out=None, **_):
        if out is not None:
            return out
        m = a.shape[1] if trans_a else a.shape[0]
        n = b.shape[0] if trans_b else b.shape[1]
        return cupy.zeros((m, n), dtype=a.dtype)

    saved = dense.dense_gemm, dense.gemm, dense.matmul_accumulate
    dense.dense_gemm = fill
    dense.gemm = lambda a, b, transa=False, transb=False: fill(a, b, transa, transb)
    dense.matmul_accumulate = lambda *a, **k: None
    try:
        yield
    finally:
        dense.dense_gemm, dense.gemm, dense.matmul_accumulate = saved


def build(name: str, n: int, want: list) -> tuple[Any, str]:
    from tinygan.kernels.gpu import dense

    from bench import steps

    what, plan = POLICIES[name]
    saved = dense.plan_product
    _PRODUCTION[:] = [saved]
    if plan is not None:
        dense.plan_product = plan
    stubbed = _without_products(dense) if name == "no-products" else contextlib.nullcontext()
    try:
        with stubbed:
            if name == "no-products":
                ok, text = True, "not checked (no products)"
            else:
                ok, _, text = steps.validate_tiny("mnist", n, "gpu", "gpu", want)
            built = steps.tiny_gpu_step("mnist", n, graph=True)
            for _ in range(3):  # warm-up, capture, first replay: the graph holds the policy's kernels from here on
                built.fn()
    finally:
        dense.plan_product = saved
    return built, f"{'ok' if ok else 'GRADIENTS OFF'}: {text}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--replays", type=int, default=200)
    parser.add_argument("--policy", action="append", choices=list(POLICIES), help="repeatable (default all)")
    args = parser.parse_args(argv)
    from tinygan.backend import set_precision

    if gpu_missing("dense_step_policies"):
        return 2
    from bench import steps
    from bench.step_precisions import time_step

    set_precision("fp32")
    n = 125
    want = steps.reference_gradients("mnist", n)
    names = args.policy or list(POLICIES)
    built = {name: build(name, n, want) for name in names}
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(args.rounds):
        for name in names:
            times[name].append(time_step(built[name][0], args.replays) * 1e3)
    base = statistics.median(times[names[0]])
    print(f"\n| policy | what | median ms | rounds ms | vs {names[0]} | validation |")
    print("| --- | --- | ---: | ---: | ---: | --- |")
    for name in names:
        med = statistics.median(times[name])
        rounds = " / ".join(f"{t:.3f}" for t in times[name])
        print(f"| {name} | {POLICIES[name][0]} | {med:.3f} | {rounds} | {base / med:.2f}x | {built[name][1]} |")
    return 0 if all(b[1].startswith("ok") for b in built.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
