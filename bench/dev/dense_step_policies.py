"""The dense MNIST GAN's fp32 training step under each way of running its Dense products, side by side.

``kernels/gpu/dense.py`` decides per product (``plan_product``: cuBLAS or ``dense_gemm`` with a tile and a
pipeline) and per backward (``gated_backward``: dz formed inside the products or by ``rows_grad_sum``). This
script swaps those two functions for each policy below, captures the whole step as a CUDA graph (as training
runs it), checks its gradients against the float64 reference step (``bench.steps.validate_tiny``), and times the
policies in interleaved rounds, so that the per-product timings of ``dense_gemm_versions.py`` are checked where
they matter: the step, with the two streams and everything else around the products.

    python -m bench.dev.dense_step_policies [--rounds 5] [--replays 200]    # needs CuPy and a GPU
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from typing import Any

POLICIES: dict[str, tuple[str, Callable[..., Any] | None, Callable[..., bool] | None]] = {
    # name: (what, plan_product, gated_backward); None keeps production's
    "cublas": ("every product on cuBLAS, dz by rows_grad_sum (the eleventh session's step)", lambda *a: None, None),
    "v3-gated": ("32 x 64 tiles through registers, dz in the products", lambda *a: {"tile": "32x64"}, lambda *a: True),
    "v3": ("32 x 64 tiles through registers, dz by rows_grad_sum", lambda *a: {"tile": "32x64"}, lambda *a: False),
    "v5": (
        "32 x 64 tiles by cp.async, dz by rows_grad_sum",
        lambda *a: {"tile": "32x64", "pipeline": "async"},
        lambda *a: False,
    ),
    "v6": (
        "64 x 64 tiles by cp.async, dz by rows_grad_sum",
        lambda *a: {"tile": "64x64", "pipeline": "async"},
        lambda *a: False,
    ),
    "v7-gated": ("64 x 64 tiles through registers, dz in the products", lambda *a: {"tile": "64x64"}, lambda *a: True),
    "production": ("kernels/gpu/dense.py's own plan", None, None),
}


def build(name: str, n: int, want: list) -> tuple[Any, str]:
    from tinygan.kernels.gpu import dense

    from bench import steps

    what, plan, gated = POLICIES[name]
    saved = dense.plan_product, dense.gated_backward
    if plan is not None:
        dense.plan_product = plan
    if gated is not None:
        dense.gated_backward = gated
    try:
        ok, _, text = steps.validate_tiny("mnist", n, "gpu", "gpu", want)
        built = steps.tiny_gpu_step("mnist", n, graph=True)
        for _ in range(3):  # warm-up, capture, first replay: the graph holds the policy's kernels from here on
            built.fn()
    finally:
        dense.plan_product, dense.gated_backward = saved
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
    from tinygan.backend import gpu_unavailable_reason, set_precision

    reason = gpu_unavailable_reason()
    if reason:
        print(f"dense_step_policies needs a CUDA GPU: {reason}", file=sys.stderr)
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
