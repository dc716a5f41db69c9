"""One training step, tinygan (Numba) or PyTorch eager, timed in a fresh process: run them in turn.

    for impl in tinygan torch tinygan torch; do python -m bench.side_by_side $impl dcgan; done

Imports tinygan before NumPy, as the examples do, so OpenBLAS gets tinygan's thread timeout. Prints one
JSON line: the median and minimum of the step time over 10 (DCGAN) or 40 (MNIST) steps after 3 warm-ups.
"""

# ruff: noqa: I001, E402  (tinygan is imported before NumPy on purpose; an import sorter must not move it)
import json
import sys
import time

import tinygan  # noqa: F401  (first: sets OPENBLAS_THREAD_TIMEOUT before NumPy loads OpenBLAS)
import numpy as np

from bench import steps


def main(impl: str, model: str) -> None:
    n = 125 if model == "mnist" else 128
    if impl == "tinygan":
        step = steps.tiny_step(steps.tiny_trainer(model, n, "cpu", "numba"))
    elif impl == "torch":
        step = steps.torch_step(model, n, "cpu").fn
    else:
        raise SystemExit(f"unknown implementation {impl!r}: expected tinygan or torch")
    for _ in range(3):
        step()
    times = []
    for _ in range(40 if model == "mnist" else 10):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    print(
        json.dumps(
            {"impl": impl, "model": model, "median_ms": 1e3 * float(np.median(times)), "min_ms": 1e3 * min(times)}
        )
    )


if __name__ == "__main__":
    main(*sys.argv[1:3])
