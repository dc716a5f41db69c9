"""One training step, tinygan (Numba) or PyTorch eager, timed in a fresh process: run them in turn, with the
machine's sgemm rate (the floor's denominator) measured the same way between them.

    for i in 1 2 3; do for impl in tinygan torch sgemm; do python -m bench.side_by_side $impl dcgan; done; done

``tinygan-unfused`` is tinygan with Sequential's fusion plan turned off (``set_fusion(False)``), to measure it.

Imports tinygan before NumPy, as the examples do, so OpenBLAS gets tinygan's thread timeout. Prints one
JSON line: the median and minimum of the step time over 10 (DCGAN) or 40 (MNIST) steps after 3 warm-ups,
the median of the process's CPU time per step (all its threads, page faults included; a pool that spins while
it waits counts too, so compare it between runs of one implementation, not across them), with the step's
GEMM GFLOP and the 1-minute load average before and after; ``sgemm`` prints NumPy's float32
GEMM rate at 2048^3 on all cores (``bench.harness.measure_peak``, best and median) instead.
"""

# ruff: noqa: I001, E402  (tinygan is imported before NumPy on purpose; an import sorter must not move it)
import json
import os
import sys
import time

import tinygan  # noqa: F401  (first: sets OPENBLAS_THREAD_TIMEOUT before NumPy loads OpenBLAS)
import numpy as np

from bench import steps
from bench.cases import step_flops


def main(impl: str, model: str) -> None:
    n = 125 if model == "mnist" else 128
    load_before = os.getloadavg()[0]
    if impl == "sgemm":
        from bench.harness import measure_peak

        peak = measure_peak("cpu")
        print(
            json.dumps(
                {
                    "impl": impl,
                    "sgemm_gflops": peak["gemm_gflops"],
                    "sgemm_gflops_median": peak["gemm_gflops_median"],
                    "load": [load_before, os.getloadavg()[0]],
                }
            )
        )
        return
    if impl in ("tinygan", "tinygan-unfused"):
        trainer = steps.tiny_trainer(model, n, "cpu", "numba")
        if impl == "tinygan-unfused":  # Sequential's fusion plan off: every layer its own passes
            for net in (trainer.G, trainer.D):
                net.set_fusion(False)
        step = steps.tiny_step(trainer)
    elif impl == "torch":
        step = steps.torch_step(model, n, "cpu").fn
    else:
        raise ValueError(f"unknown implementation {impl!r}: expected tinygan, tinygan-unfused, torch or sgemm")
    for _ in range(3):
        step()
    times, cpu_times = [], []
    for _ in range(40 if model == "mnist" else 10):
        start, cpu_start = time.perf_counter(), time.process_time()
        step()
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    print(
        json.dumps(
            {
                "impl": impl,
                "model": model,
                "median_ms": 1e3 * float(np.median(times)),
                "min_ms": 1e3 * min(times),
                "cpu_median_ms": 1e3 * float(np.median(cpu_times)),
                "gflop": step_flops(model, n) / 1e9,
                "load": [load_before, os.getloadavg()[0]],
            }
        )
    )


def _parse(argv: list[str]) -> tuple[str, str]:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m bench.side_by_side", description=__doc__.split("\n\n")[0].replace("\n", " ")
    )
    parser.add_argument(
        "impl", choices=("tinygan", "tinygan-unfused", "torch", "sgemm"), help="what to time in this process"
    )
    parser.add_argument("model", nargs="?", choices=("mnist", "dcgan"), default="dcgan", help="the step (dcgan)")
    args = parser.parse_args(argv)
    return args.impl, args.model


if __name__ == "__main__":
    main(*_parse(sys.argv[1:]))
