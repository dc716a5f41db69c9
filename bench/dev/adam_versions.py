"""Versions of the GPU's multi-tensor Adam (one launch updates a model's every weight, its step count in
device memory, as the captured training step runs it), for ``python -m bench.dev.kernel_versions --op adam``.

- v1: production until the seventh session (``adam_versions.cu``): one grid strides over each tensor in
  turn. Measured in the training step (H200, ``bench.profile_step``): 21 µs a launch for the MNIST GAN's
  1.5M-weight networks, 20 µs for the DCGAN's G and D together.
- v2 (production in the seventh session, ``kernels/gpu/adam.cu``): every tensor cut into chunks of ``ADAM_CHUNK``
  elements from a cached table, one block a chunk, four elements a thread loaded before any is computed.
  Measured in the step: DCGAN 40.7 -> 18.1 µs, MNIST only 42.2 -> 37.5 µs (2.2 TB/s, about half the copy rate).
- v3 (production since the eighth session): v2's kernel on a grid capped at a few blocks per SM, each block
  looping over chunks. Hypothesis: v2 launches a block per chunk (1,426 for the MNIST D), and each block
  ends with a fence and an atomic on the one step-ticket word, serialised in the L2; a grid of 4 blocks
  per SM (528 on an H200) takes 2.7x fewer tickets. Prediction: MNIST nets 0.8x v2's time or better,
  the DCGAN's (under 600 chunks a net) unchanged. Measured (H200, 2026-12-02, eighth session, call 1):
  MNIST D 18.3 -> 13.7 µs (0.75x), MNIST G 18.7 -> 14.0 (0.75x), as predicted; DCGAN D unchanged (5.6), but
  DCGAN G 11.2 -> 8.2 µs (0.73x), against the prediction (its 808 chunks are over 528 blocks too).

Cases: the parameter tensors of the four seed networks, laid end to end in one array per role (param,
grad, m, v), so the reference is one float64 Adam step over the whole array. Every version performs step
t + 1 from a device counter holding t, and advances it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# The DCGAN's Adam settings, in both networks' step.
LR, BETA1, BETA2, EPS = 2e-4, 0.5, 0.999, 1e-8
COMPLETED_STEPS = 4  # the counter the cases start from: bias corrections of step 5

SEED_NETWORKS = (("mnist_dense", "D", "MNIST D"), ("mnist_dense", "G", "MNIST G"), ("dcgan", "G", "DCGAN G"),
                 ("dcgan", "D", "DCGAN D"))  # fmt: skip


def _adam_module() -> Any:
    """adam_versions.cu compiled after production's _common.cu and adam.cu (whose adam_step it calls)."""
    from bench.dev.kernel_versions import dev_module

    return dev_module("adam_versions.cu", ("adam_multi_v1",), production=("adam.cu",))


def network_sizes() -> list[tuple[str, list[int]]]:
    """(label, the sizes of its parameter tensors in order) of each seed network."""
    from tinygan import models

    out = []
    for family, role, label in SEED_NETWORKS:
        net = models.build(family, role)
        sizes = [int(v.size) for _, layer in net.named_layers() for v in layer.params.values()]
        out.append((f"{label}: {sum(sizes):,} weights in {len(sizes)} tensors", sizes))
    return out


def cases(dtype: Any, networks: list[tuple[str, list[int]]] | None = None) -> list[tuple]:
    """kernel_versions cases: (label, make(rng) -> inputs, reference(float64 inputs) -> (p, m, v), bytes)."""
    networks = network_sizes() if networks is None else networks
    size = np.dtype(dtype).itemsize
    out = []
    for label, sizes in networks:
        total = sum(sizes)

        def make(rng: np.random.Generator, total: int = total, sizes: list[int] = sizes) -> tuple:
            p, g, m = (rng.standard_normal(total).astype(dtype) for _ in range(3))
            v = (rng.standard_normal(total) ** 2).astype(dtype)
            return p, g, m, v, np.array([COMPLETED_STEPS, 0], dtype=np.uint64), tuple(sizes)

        out.append((label, make, reference, 7 * total * size))  # reads p, g, m, v; writes p, m, v
    return out


def reference(args: tuple) -> tuple:
    from tinygan.kernels import reference as R

    p, g, m, v, step, _ = (a.copy() if isinstance(a, np.ndarray) else a for a in args)
    R.adam_update(p, g, m, v, LR, BETA1, BETA2, EPS, int(step[0]) + 1)
    return p, m, v


def _views(flat: Any, sizes: tuple[int, ...]) -> list[Any]:
    out, start = [], 0
    for n in sizes:
        out.append(flat[start : start + n])
        start += n
    return out


def _tables(p: Any, g: Any, m: Any, v: Any, sizes: tuple[int, ...], chunk: int = 0) -> tuple:
    from tinygan.kernels.gpu import adam

    groups = [tuple(a.data.ptr for a in four) for four in zip(*(_views(a, sizes) for a in (p, g, m, v)))]
    return adam._table(groups, list(sizes), chunk)


def _hyper() -> tuple:
    return tuple(np.float64(x) for x in (LR, BETA1, BETA2, EPS))


def adam_v1(p: Any, g: Any, m: Any, v: Any, step: Any, sizes: tuple[int, ...]) -> tuple:
    from tinygan.kernels.gpu import adam
    from tinygan.kernels.gpu._common import THREADS

    ptrs, size_table = _tables(p, g, m, v, sizes)
    args = (ptrs, size_table, np.int32(len(sizes)), step, np.int32(1), *_hyper())
    _adam_module().get("adam_multi_v1", p.dtype)(adam._grid(sum(sizes)), (THREADS,), args)
    return p, m, v


def adam_v2(p: Any, g: Any, m: Any, v: Any, step: Any, sizes: tuple[int, ...]) -> tuple:
    from tinygan.kernels.gpu import adam
    from tinygan.kernels.gpu._common import MAX_BLOCKS, THREADS

    ptrs, size_table, chunks = _tables(p, g, m, v, sizes, adam.ADAM_CHUNK)
    grid = (max(1, min(MAX_BLOCKS, len(chunks))),)  # a block a chunk
    args = (ptrs, size_table, chunks, np.int32(len(chunks)), step, np.int32(1), *_hyper())
    adam._MOD.get("adam_update_multi_device_step", p.dtype)(grid, (THREADS,), args)
    return p, m, v


def adam_v3(p: Any, g: Any, m: Any, v: Any, step: Any, sizes: tuple[int, ...]) -> tuple:
    from tinygan.kernels.gpu.adam import adam_update_multi

    adam_update_multi(*(_views(a, sizes) for a in (p, g, m, v)), LR, BETA1, BETA2, EPS, step)
    return p, m, v
