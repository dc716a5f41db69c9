"""Random numbers on the GPU: a counter-based Philox4x32-10 generator (kernels/gpu/philox.cu).

Why not ``cupy.random``: CuPy refuses it inside CUDA stream capture, and a graph captured around
it would replay the same numbers. Here the 128-bit counter lives in device memory and every draw
kernel advances it itself, so a captured graph draws fresh numbers on each replay, and eager
draws and graph replays continue one and the same stream of numbers.

Output ``i`` of a draw comes from counter ``base + i // k`` (``k`` = 4 words per counter for
uint32, float32 and Bernoulli draws, 2 values per counter for float64), under the key
``(seed & 0xffffffff, seed >> 32)``: the first four words of ``PhiloxGenerator(0)`` are Random123's
known answer for key (0, 0) and counter (0, 0, 0, 0).

One generator belongs to one device and one stream at a time (the counter update is ordered by
the stream).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tinygan.backend import require_gpu

_MOD = None

_PER_COUNTER = {"uint32": 4, "float": 4, "double": 2, "bernoulli": 4}


def _module() -> Any:
    global _MOD
    if _MOD is None:
        from tinygan.kernels.gpu._common import CudaModule

        _MOD = CudaModule(
            "philox.cu",
            templates=("philox_uniform", "philox_normal", "philox_dropout"),
            plain=("philox_uint32", "philox_bernoulli"),
        )
    return _MOD


class PhiloxGenerator:
    """Philox4x32-10 on the GPU with its counter in device memory.

    ``uniform``/``normal`` allocate; ``uniform_into``/``normal_into`` fill an existing
    C-contiguous float32 or float64 array (what a captured CUDA graph needs: no allocation).
    """

    def __init__(self, seed: int = 0) -> None:
        self._cp = require_gpu()
        self.seed = int(seed) % 2**64
        # Words 0-3: the 128-bit counter; word 4: the kernels' finished-block ticket (always 0 between launches).
        self._state = self._cp.zeros(5, dtype=self._cp.uint32)

    @property
    def key(self) -> tuple[int, int]:
        return self.seed & 0xFFFFFFFF, self.seed >> 32

    def device_arrays(self) -> list[Any]:
        """The generator's state in device memory (its counter), which every draw reads and advances: what
        a captured CUDA graph holds by address."""
        return [self._state]

    # -- checkpoints --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, int]:
        """Seed and counter as host ints (reads the counter back: synchronizes with the stream)."""
        words = self._state[:4].get().astype(np.uint64)
        counter = sum(int(w) << (32 * i) for i, w in enumerate(words))
        return {"seed": self.seed, "counter": counter}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.seed = int(state["seed"]) % 2**64
        counter = int(state["counter"]) % 2**128
        words = [(counter >> (32 * i)) & 0xFFFFFFFF for i in range(4)] + [0]
        self._state[...] = self._cp.asarray(np.array(words, dtype=np.uint32))

    # -- draws into existing arrays -----------------------------------------------------------
    def _launch(self, kernel: Any, out: Any, per_counter: int, *extra: Any) -> Any:
        from tinygan.kernels.gpu._common import MAX_BLOCKS, THREADS

        n = int(out.size)
        if n == 0:
            return out
        used = -(-n // per_counter)
        grid = (max(1, min(MAX_BLOCKS, -(-used // THREADS))),)
        k0, k1 = self.key
        kernel(grid, (THREADS,), (self._state, np.uint32(k0), np.uint32(k1), out, np.int64(n), np.uint64(used), *extra))
        return out

    def _check_out(self, out: Any, what: str) -> str:
        cp = self._cp
        if not isinstance(out, cp.ndarray) or not out.flags.c_contiguous:
            raise ValueError(f"PhiloxGenerator.{what}: out must be a C-contiguous CuPy array")
        if out.dtype == np.float32:
            return "float"
        if out.dtype == np.float64:
            return "double"
        raise ValueError(f"PhiloxGenerator.{what}: out must be float32 or float64, got {out.dtype}")

    def uniform_into(self, out: Any) -> Any:
        """Fill ``out`` with uniform numbers in [0, 1); returns ``out``."""
        ctype = self._check_out(out, "uniform_into")
        return self._launch(_module().get("philox_uniform", out.dtype), out, _PER_COUNTER[ctype])

    def normal_into(self, out: Any) -> Any:
        """Fill ``out`` with standard normal numbers (Box-Muller); returns ``out``."""
        ctype = self._check_out(out, "normal_into")
        return self._launch(_module().get("philox_normal", out.dtype), out, _PER_COUNTER[ctype])

    def random_raw_into(self, out: Any) -> Any:
        """Fill a C-contiguous uint32 array with Philox's raw output words."""
        if not isinstance(out, self._cp.ndarray) or out.dtype != np.uint32 or not out.flags.c_contiguous:
            raise ValueError("PhiloxGenerator.random_raw_into: out must be a C-contiguous uint32 CuPy array")
        return self._launch(_module().get("philox_uint32"), out, _PER_COUNTER["uint32"])

    def bernoulli_into(self, out: Any, p: float) -> Any:
        """Fill a C-contiguous bool or uint8 array with 1 (True) with probability ``p``."""
        if not isinstance(out, self._cp.ndarray) or out.dtype not in (np.bool_, np.uint8) or not out.flags.c_contiguous:
            raise ValueError("PhiloxGenerator.bernoulli_into: out must be a C-contiguous bool or uint8 CuPy array")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"PhiloxGenerator.bernoulli_into: p must be in [0, 1], got {p}")
        threshold = np.uint64(min(2**32, round(p * 2**32)))
        self._launch(_module().get("philox_bernoulli"), out.view(np.uint8), _PER_COUNTER["bernoulli"], threshold)
        return out

    def dropout(self, x: Any, p: float) -> tuple[Any, Any]:
        """Inverted dropout of ``x`` with a fresh mask, in one launch: ``(y, mask)`` where ``mask`` (bool,
        True = kept) is what ``bernoulli(x.shape, 1 - p)`` would draw and ``y`` what
        ``tinygan.kernels.gpu.dropout_forward(x, mask, p)`` would return."""
        cp = self._cp
        if not isinstance(x, cp.ndarray):
            raise ValueError(f"PhiloxGenerator.dropout: x must be a CuPy array, received {type(x).__name__}")
        if not 0.0 <= p < 1.0:
            raise ValueError(f"PhiloxGenerator.dropout: p must be in [0, 1), got {p}")
        from tinygan.kernels.gpu._common import MAX_BLOCKS, THREADS

        x = cp.ascontiguousarray(x)
        self._check_out(x, "dropout")
        y = cp.empty_like(x)
        mask = cp.empty(x.shape, dtype=np.bool_)
        n = int(x.size)
        if n == 0:
            return y, mask
        used = -(-n // _PER_COUNTER["bernoulli"])
        grid = (max(1, min(MAX_BLOCKS, -(-used // THREADS))),)
        threshold = np.uint64(min(2**32, round((1.0 - p) * 2**32)))
        k0, k1 = self.key
        _module().get("philox_dropout", x.dtype)(
            grid,
            (THREADS,),
            (
                self._state,
                np.uint32(k0),
                np.uint32(k1),
                x,
                y,
                mask.view(np.uint8),
                np.int64(n),
                np.uint64(used),
                threshold,
                x.dtype.type(1.0 / (1.0 - p)),
            ),
        )
        return y, mask

    # -- allocating draws ---------------------------------------------------------------------
    def uniform(self, shape: Any, dtype: Any = np.float32) -> Any:
        return self.uniform_into(self._cp.empty(shape, dtype=dtype))

    def normal(self, shape: Any, dtype: Any = np.float32) -> Any:
        return self.normal_into(self._cp.empty(shape, dtype=dtype))

    def random_raw(self, shape: Any) -> Any:
        return self.random_raw_into(self._cp.empty(shape, dtype=np.uint32))

    def bernoulli(self, shape: Any, p: float) -> Any:
        """A bool array, True with probability ``p`` (a dropout keep-mask for p = 1 - drop rate)."""
        out = self._cp.empty(shape, dtype=np.bool_)
        self.bernoulli_into(out, p)
        return out

    def __repr__(self) -> str:
        return f"PhiloxGenerator(seed={self.seed})"
