"""The tiled Numba convolutions (kernels/cpu/conv.py, kernels/cpu/tiles.py) against the reference: tiles that
split the batch unevenly, several workers, both unfold layouts, batch 0 and 1, odd geometries, the lazy im2col
cache, and errors."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from tinygan.kernels import cpu as NB
from tinygan.kernels import reference as R
from tinygan.kernels.cpu import conv as conv_module
from tinygan.kernels.cpu import tiles

# (N, C, H, W, O, kernel, stride, padding): odd sizes, non-square kernels and strides, stride above the kernel.
CONV_CASES = [
    (5, 3, 7, 9, 4, 3, 2, 1),
    (7, 2, 6, 5, 3, (3, 2), (1, 2), (1, 0)),
    (3, 4, 9, 9, 5, (2, 3), (3, 2), (0, 2)),
    (6, 5, 8, 8, 2, 3, 2, 1),
]
# (N, C_in, H, W, C_out, kernel, stride, padding, output_padding)
CONVT_CASES = [
    (5, 3, 3, 2, 4, 5, 2, 2, 1),
    (7, 2, 4, 3, 3, (3, 2), (2, 3), (1, 0), (1, 2)),
    (3, 4, 2, 3, 2, 4, 2, 1, 0),
]


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


@pytest.fixture(params=["one image per tile", "three images per tile", "whole batch in a tile"])
def tile_bytes(request, monkeypatch):
    """Tiles of one image (many tiles, shared by every worker; a tile's plane is used in place), of three
    (the last one short when 3 does not divide the batch; planes copied), or of the whole batch (one tile)."""
    if request.param == "three images per tile":
        monkeypatch.setattr(conv_module, "_images_per_tile", lambda N, per_image, target: max(1, min(N, 3)))
        return None
    size = 1 if request.param == "one image per tile" else 1 << 30
    monkeypatch.setattr(conv_module, "TILE_BYTES", size)
    monkeypatch.setattr(conv_module, "WEIGHT_TILE_BYTES", size)
    return size


@pytest.fixture(params=["channels-last", "channels-first"])
def layout(request, monkeypatch):
    """Every pass unfolds channels-last (NHWC patches) or channels-first (gathers through index tables)."""
    monkeypatch.setattr(conv_module, "NHWC_MIN_CHANNELS", 1 if request.param == "channels-last" else 10**9)
    return request.param


def _tol(dtype):
    return {"rtol": 1e-5, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [0, 1, None])
@pytest.mark.parametrize("case", CONV_CASES)
def test_tiled_conv2d_matches_reference(rng, tile_bytes, layout, dtype, n, case):
    N, c, h, w, o, k, s, p = case
    N = N if n is None else n
    k, s, p = _pair(k), _pair(s), _pair(p)
    x = rng.standard_normal((N, c, h, w)).astype(dtype)
    W = rng.standard_normal((o, c, *k)).astype(dtype)
    b = rng.standard_normal(o).astype(dtype)
    y, cache = NB.conv2d_forward(x, W, b, s, p)
    y_ref, cols_ref = R.conv2d_forward(x, W, b, s, p)
    assert y.dtype == dtype and y.flags.c_contiguous
    np.testing.assert_allclose(y, y_ref, **_tol(dtype))
    np.testing.assert_array_equal(np.asarray(cache), cols_ref)  # the lazy cache is im2col(x), exactly
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = NB.conv2d_backward_data(dy, W, x.shape, s, p)
    assert dx.dtype == dtype and dx.shape == x.shape
    np.testing.assert_allclose(dx, R.conv2d_backward_data(dy, W, x.shape, s, p), **_tol(dtype))
    want = R.conv2d_backward_weight(dy, cols_ref, W.shape)
    for cols in (cache, np.asarray(cache)):  # tiled from x, and an explicit matrix
        for got, ref in zip(NB.conv2d_backward_weight(dy, cols, W.shape), want, strict=True):
            assert got.dtype == dtype and got.shape == ref.shape
            np.testing.assert_allclose(got, ref, **_tol(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [0, 1, None])
@pytest.mark.parametrize("case", CONVT_CASES)
def test_tiled_conv_transpose2d_matches_reference(rng, tile_bytes, layout, dtype, n, case):
    N, c, h, w, o, k, s, p, op = case
    N = N if n is None else n
    k, s, p, op = _pair(k), _pair(s), _pair(p), _pair(op)
    x = rng.standard_normal((N, c, h, w)).astype(dtype)
    W = rng.standard_normal((c, o, *k)).astype(dtype)
    b = rng.standard_normal(o).astype(dtype)
    y = NB.conv_transpose2d_forward(x, W, b, s, p, op)
    np.testing.assert_allclose(y, R.conv_transpose2d_forward(x, W, b, s, p, op), **_tol(dtype))
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx, cache = NB.conv_transpose2d_backward_data(dy, W, s, p)
    dx_ref, dy_cols_ref = R.conv_transpose2d_backward_data(dy, W, s, p)
    np.testing.assert_allclose(dx, dx_ref, **_tol(dtype))
    np.testing.assert_array_equal(np.asarray(cache), dy_cols_ref)
    want = R.conv_transpose2d_backward_weight(dy, x, W.shape, s, p)
    for cached in (None, cache, np.asarray(cache)):
        for got, ref in zip(NB.conv_transpose2d_backward_weight(dy, x, W.shape, s, p, dy_cols=cached), want):
            assert got.dtype == dtype
            np.testing.assert_allclose(got, ref, **_tol(dtype))


def test_tiled_results_are_reproducible(rng, layout, monkeypatch):
    """Every pass gives the same bits when run again, however the workers happened to share the tiles (the
    weight gradient sums its tiles in fixed groups); other tile sizes agree to rounding (BLAS may block a product
    of another shape differently)."""
    x = rng.standard_normal((19, 6, 11, 10)).astype(np.float32)
    W = rng.standard_normal((7, 6, 3, 3)).astype(np.float32)
    dy = rng.standard_normal((19, 7, 6, 5)).astype(np.float32)

    def passes() -> list[np.ndarray]:
        y, cache = NB.conv2d_forward(x, W, None, (2, 2), (1, 1))
        dx = NB.conv2d_backward_data(dy, W, x.shape, (2, 2), (1, 1))
        return [y, dx, *NB.conv2d_backward_weight(dy, cache, W.shape)]

    runs = {}
    for size in (1, 3000, 1 << 30):
        monkeypatch.setattr(conv_module, "TILE_BYTES", size)
        monkeypatch.setattr(conv_module, "WEIGHT_TILE_BYTES", size)
        runs[size] = passes()
        for _ in range(3):
            for again, first in zip(passes(), runs[size], strict=True):
                np.testing.assert_array_equal(again, first)
    for got, want in zip(runs[1], runs[1 << 30], strict=True):
        assert np.max(np.abs(got - want)) <= 1e-5 * np.max(np.abs(want))


def test_run_tiles_visits_every_tile_once_on_every_worker():
    seen, lock, workers_used = [], threading.Lock(), set()

    def work(tile: int, worker: int) -> None:
        with lock:
            seen.append(tile)
            workers_used.add(worker)

    tiles.run_tiles(50, work, n_workers=2)
    assert sorted(seen) == list(range(50))
    assert workers_used <= {0, 1}
    tiles.run_tiles(0, work)  # no tiles: nothing runs
    assert len(seen) == 50


def test_run_tiles_raises_a_tile_error_after_the_workers_stop():
    def work(tile: int, worker: int) -> None:
        if tile == 3:
            raise ValueError("tile 3 failed")

    with pytest.raises(ValueError, match="tile 3 failed"):
        tiles.run_tiles(20, work, n_workers=2)


def _conv_in_child(queue) -> None:
    x = np.ones((8, 2, 5, 5), np.float32)
    queue.put(float(NB.conv2d_forward(x, np.ones((2, 2, 3, 3), np.float32), None, (1, 1), (1, 1))[0].sum()))


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_tiles_work_in_a_forked_child_after_the_parent_used_its_pool(monkeypatch):
    import multiprocessing

    monkeypatch.setattr(conv_module, "TILE_BYTES", 1)  # 8 tiles: the pool's thread takes some (the child inherits)
    x = np.ones((8, 2, 5, 5), np.float32)
    want = float(NB.conv2d_forward(x, np.ones((2, 2, 3, 3), np.float32), None, (1, 1), (1, 1))[0].sum())
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_conv_in_child, args=(queue,))
    child.start()
    child.join(timeout=60)
    if child.is_alive():
        child.kill()  # hung waiting for a pool thread that was not forked
    assert child.exitcode == 0, "the child hung or failed"
    assert queue.get(timeout=5) == want


def test_blas_is_one_thread_inside_tiles_and_restored_after():
    from threadpoolctl import threadpool_info

    def blas_threads() -> list[int]:
        return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]

    before = blas_threads()
    inside: list[list[int]] = []
    tiles.run_tiles(1, lambda tile, worker: inside.append(blas_threads()))
    assert inside == [[1] * len(before)]
    assert blas_threads() == before


def test_tiled_kernels_check_the_shapes_they_trust(rng):
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    W = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    _, cache = NB.conv2d_forward(x, W, None, (2, 2), (1, 1))
    with pytest.raises(ValueError, match="conv2d_backward_weight: dy of shape"):
        NB.conv2d_backward_weight(np.zeros((2, 4, 5, 5), np.float32), cache, W.shape)
    with pytest.raises(ValueError, match="conv2d_backward_data: dy of shape"):
        NB.conv2d_backward_data(np.zeros((2, 4, 5, 5), np.float32), W, x.shape, (2, 2), (1, 1))
    with pytest.raises(ValueError, match="conv_transpose2d_backward_weight: dy of shape"):
        NB.conv_transpose2d_backward_weight(
            np.zeros((2, 4, 8, 8), np.float32), np.zeros((2, 3, 5, 5), np.float32), (3, 4, 3, 3), (2, 2), (1, 1)
        )
