"""Where the Numba DCGAN training step's time goes: every CPU kernel call of the step timed, by kernel and shape.

Every public function of ``tinygan.kernels.cpu`` (the namespace the layers, the loss and Adam call through) is
wrapped with a wall-clock timer for the run; the step itself is ``GANTrainer.step`` as ``bench.side_by_side``
times it (batch 128, the default recipe). A kernel called with an (N, C, H, W) first argument is reported per
shape, so each convolution pass of each layer gets its own line; "outside the kernels" is the step's time
minus the sum of its kernel calls (Python glue in the layers and the step, NumPy reshapes and allocations).

    python -m bench.dev.cpu_conv_profile --steps 5          # median per step over 5 steps after 2 warm-ups
    python -m bench.dev.cpu_conv_profile --tiles            # each conv pass's CPU time by tile helper
    python -m bench.dev.cpu_conv_profile --against cpu_conv_v4 --steps 9   # whole steps, turn by turn

Prints a table (median ms per step of each kernel and shape) sorted by time, then the totals per group
(convolutions, BatchNorm, activations, Adam, loss, Dense, other), with the 1-minute load before and after.
"""

# ruff: noqa: I001, E402  (tinygan is imported before NumPy on purpose)
from __future__ import annotations

import argparse
import collections
import functools
import os
import statistics
import sys
import time
import types

import tinygan  # noqa: F401  (first: OPENBLAS_THREAD_TIMEOUT before NumPy loads OpenBLAS)
import numpy as np

from bench import steps

GROUPS = (
    ("conv", ("conv", "im2col", "col2im")),
    ("batchnorm", ("batchnorm",)),
    ("activation", ("leaky_relu", "relu", "tanh", "sigmoid")),
    ("adam", ("adam",)),
    ("loss", ("bce",)),
    ("dense", ("dense",)),
    ("dropout", ("dropout",)),
)


# The DCGAN's convolution layers, named as in bench.dev.cpu_conv_versions, by (kernel family, first argument's
# C, H): the forward passes take the layer's input, the backward passes its output gradient.
DCGAN_LAYERS = {
    ("conv2d_forward", 3, 32): "D1",
    ("conv2d_forward", 64, 32): "D2",
    ("conv2d_forward", 128, 16): "D3",
    ("conv2d_forward", 128, 8): "D4",
    ("conv2d_backward", 64, 32): "D1",
    ("conv2d_backward", 128, 16): "D2",
    ("conv2d_backward", 128, 8): "D3",
    ("conv2d_backward", 32, 4): "D4",
    ("conv_transpose2d_forward", 128, 4): "G1",
    ("conv_transpose2d_forward", 128, 8): "G2",
    ("conv_transpose2d_forward", 64, 16): "G3",
    ("conv_transpose2d_backward", 128, 8): "G1",
    ("conv_transpose2d_backward", 64, 16): "G2",
    ("conv_transpose2d_backward", 3, 32): "G3",
}


def layer_of(name: str, shape: str) -> str:
    dims = [int(d) for d in shape.split("x")] if shape else []
    if len(dims) != 4:
        return ""
    family = name if name.endswith("forward") else name.rsplit("_", 1)[0]
    return DCGAN_LAYERS.get((family, dims[1], dims[2]), "")


def group_of(name: str) -> str:
    for group, prefixes in GROUPS:
        if any(p in name for p in prefixes):
            return group
    return "other"


def instrument(module: types.ModuleType, current: list[dict[tuple[str, str], float]]) -> None:
    """Replace every public function of ``module`` with one that adds its wall time to current[0][(name, shape)].

    Each timer is also set in the module that defines the function, so that the namespace still holds that
    module's own kernel: the gated Conv2d backward (``fused._own_kernels``) runs only while it does, and the
    profile must time the path production takes. ``conv.conv2d_backward_gated`` (not a contract op) is timed too.
    """
    from tinygan.kernels.cpu import conv

    for name in [*dir(module), "conv2d_backward_gated"]:
        fn = getattr(module, name, None) or getattr(conv, name)
        if name.startswith("_") or not isinstance(fn, types.FunctionType | types.BuiltinFunctionType):
            continue
        if hasattr(fn, "__wrapped__"):
            continue
        home = sys.modules.get(getattr(fn, "__module__", "") or "")

        def timed(*args, _fn=fn, _name=name, **kwargs):
            shape = ""
            if args and isinstance(args[0], np.ndarray):
                shape = "x".join(str(d) for d in args[0].shape)
            start = time.perf_counter()
            try:
                return _fn(*args, **kwargs)
            finally:
                current[0][(_name, shape)] += time.perf_counter() - start

        wrapped = functools.wraps(fn)(timed)
        if hasattr(module, name):
            setattr(module, name, wrapped)
        if home is not None and getattr(home, name, None) is fn:
            setattr(home, name, wrapped)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--model", default="dcgan", choices=steps.MODELS)
    parser.add_argument("--tiles", action="store_true", help="split each conv pass's CPU time by tile helper")
    parser.add_argument(
        "--against", help="a bench.dev module (e.g. cpu_conv_v4): alternate whole steps with its convolutions"
    )
    args = parser.parse_args()
    if args.tiles:
        split_tiles(args.steps)
        return
    if args.against:
        against(args.against, args.model, args.steps, args.warmup)
        return
    from tinygan.kernels import cpu

    n = steps.BATCH[args.model]
    step = steps.tiny_step(steps.tiny_trainer(args.model, n, "cpu", "numba"))
    for _ in range(args.warmup):
        step()
    per_step: list[dict[tuple[str, str], float]] = []
    step_times = []
    load_before = os.getloadavg()[0]
    current: list[dict[tuple[str, str], float]] = [collections.defaultdict(float)]
    instrument(cpu, current)
    for _ in range(args.steps):
        samples: dict[tuple[str, str], float] = collections.defaultdict(float)
        current[0] = samples
        start = time.perf_counter()
        step()
        step_times.append(time.perf_counter() - start)
        per_step.append(samples)
    keys = sorted({k for s in per_step for k in s}, key=lambda k: -statistics.median(s.get(k, 0) for s in per_step))
    step_ms = 1e3 * statistics.median(step_times)
    print(
        f"{args.model} step, median of {args.steps}: {step_ms:.1f} ms; load {load_before:.2f} -> "
        f"{os.getloadavg()[0]:.2f}"
    )
    print("| kernel | layer | first argument | calls' ms per step (median) | % of step |")
    print("| --- | --- | --- | ---: | ---: |")
    groups: dict[str, list[float]] = collections.defaultdict(lambda: [0.0] * args.steps)
    for key in keys:
        ms = [1e3 * s.get(key, 0.0) for s in per_step]
        for i, v in enumerate(ms):
            groups[group_of(key[0])][i] += v
        med = statistics.median(ms)
        if med >= 0.5:
            layer = layer_of(*key) if group_of(key[0]) == "conv" else ""
            print(f"| {key[0]} | {layer} | {key[1]} | {med:.1f} | {100 * med / step_ms:.1f} |")
    print("\n| group | ms per step (median) | % of step |\n| --- | ---: | ---: |")
    total = [0.0] * args.steps
    for group, ms in sorted(groups.items(), key=lambda g: -statistics.median(g[1])):
        for i, v in enumerate(ms):
            total[i] += v
        med = statistics.median(ms)
        print(f"| {group} | {med:.1f} | {100 * med / step_ms:.1f} |")
    outside = statistics.median(1e3 * t - k for t, k in zip(step_times, total, strict=True))
    print(f"| outside the kernels | {outside:.1f} | {100 * outside / step_ms:.1f} |")


CONV_OPS = (
    "conv2d_forward",
    "conv2d_backward_data",
    "conv2d_backward_weight",
    "conv_transpose2d_forward",
    "conv_transpose2d_backward_data",
    "conv_transpose2d_backward_weight",
)


def against(name: str, model: str, n_steps: int, warmup: int) -> None:
    """Whole training steps in one process, taking turns step by step between production's convolutions and
    those of ``bench.dev.<name>`` (patched into ``tinygan.kernels.cpu``, which the layers call through): the
    same load for both; wall and process CPU time per step (all threads, page faults included)."""
    import importlib

    from tinygan.kernels import cpu

    other = importlib.import_module(f"bench.dev.{name}")
    kernels = {
        "production": {op: getattr(cpu, op) for op in CONV_OPS},
        name: {op: getattr(other, op) for op in CONV_OPS},
    }
    step = steps.tiny_step(steps.tiny_trainer(model, steps.BATCH[model], "cpu", "numba"))
    wall: dict[str, list[float]] = {k: [] for k in kernels}
    cpu_time: dict[str, list[float]] = {k: [] for k in kernels}
    load_before = os.getloadavg()[0]
    try:
        for i in range(warmup + n_steps):
            for version, ops in kernels.items():
                for op, fn in ops.items():
                    setattr(cpu, op, fn)
                start, cpu_start = time.perf_counter(), time.process_time()
                step()
                if i >= warmup:
                    wall[version].append(time.perf_counter() - start)
                    cpu_time[version].append(time.process_time() - cpu_start)
    finally:
        for op, fn in kernels["production"].items():
            setattr(cpu, op, fn)
    print(
        f"{model} step, {n_steps} turns each after {warmup} warm-ups; "
        f"load {load_before:.2f} -> {os.getloadavg()[0]:.2f}"
    )
    for version in kernels:
        print(
            f"{version}: wall median {1e3 * statistics.median(wall[version]):.0f} ms, "
            f"CPU median {1e3 * statistics.median(cpu_time[version]):.0f} ms per step"
        )


def split_tiles(rounds: int) -> None:
    """Where a pass's CPU time goes inside its tiles: every helper the tiled passes call (the layout copies,
    im2col/col2im, the GEMM) timed by the thread's CPU time, one worker, each layer pass of the DCGAN."""
    from tinygan.kernels.cpu import conv as conv_module

    from bench.dev import cpu_conv_versions as versions

    spent: dict[str, float] = collections.defaultdict(float)

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            start = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] += time.thread_time() - start

        return wrapper

    class NumPy:  # conv.py's ``np`` with its matmul timed
        matmul = staticmethod(timed("gemm", np.matmul))

        def __getattr__(self, name):
            return getattr(np, name)

    # The jitted helpers the passes call from Python; inlined ones (``_plane_sum``) are only called from jitted
    # code, which must keep seeing the jitted function.
    names = [
        n
        for n in dir(conv_module)
        if n.startswith("_")
        and hasattr(getattr(conv_module, n), "py_func")
        and getattr(conv_module, n).targetoptions.get("inline") != "always"
    ]
    saved = {n: getattr(conv_module, n) for n in [*names, "np"]}
    for n in names:
        setattr(conv_module, n, timed(n.lstrip("_"), saved[n]))
    conv_module.np = NumPy()
    rng = np.random.default_rng(0)
    print(f"load {os.getloadavg()[0]:.2f}; thread CPU ms per pass (median of {rounds}), one worker")
    try:
        with versions.one_worker(), versions.blas_threads(1):
            for layer in versions.LAYERS:
                for pass_ in versions.PASSES:
                    a = versions.make_inputs(layer, rng, np.float32)
                    fn = versions.call(conv_module_api(), layer, pass_, a)
                    parts: dict[str, list[float]] = collections.defaultdict(list)
                    totals = []
                    for _ in range(rounds):
                        spent.clear()
                        start = time.thread_time()
                        fn()
                        totals.append(time.thread_time() - start)
                        for k, v in spent.items():
                            parts[k].append(v)
                    gflop = versions.layer_flops(layer) / 1e9
                    total = 1e3 * statistics.median(totals)
                    gemm = 1e3 * statistics.median(parts.get("gemm", [0]))
                    cells = ", ".join(
                        f"{k} {1e3 * statistics.median(v):.1f}" for k, v in sorted(parts.items()) if k != "gemm"
                    )
                    print(
                        f"{layer[0]} {pass_:6s} total {total:6.1f} | gemm {gemm:6.1f} ({gflop / gemm * 1e3:4.0f} GF/s)"
                        f" | {cells} | rest {total - sum(1e3 * statistics.median(v) for v in parts.values()):.1f}",
                        flush=True,
                    )
    finally:
        for n, fn in saved.items():
            setattr(conv_module, n, fn)


def conv_module_api():
    from tinygan.kernels import cpu

    return cpu


if __name__ == "__main__":
    main()
