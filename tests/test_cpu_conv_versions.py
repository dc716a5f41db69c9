"""The kept CPU convolution versions of bench/dev (v4 frozen, v6 phase-split folds) and v5's bias-gradient
reduction, against the reference on fresh random inputs: the bench times only what these pass."""

from __future__ import annotations

import numpy as np
import pytest
from tinygan.kernels import reference as R
from tinygan.kernels.cpu import conv as conv_module

from bench.dev import cpu_conv_v4 as v4
from bench.dev import cpu_conv_v6 as v6

# (N, C_in, H, W, C_out, kernel, stride, padding, output_padding) of a transposed convolution; its adjoint is the
# Conv2d (C_out -> C_in) whose input gradient v6 folds the same way. Odd and non-square sizes, stride above the
# kernel (phases without taps), stride 1 (one phase), the DCGAN's 5x5/2 and 3x3/2 with padding.
FOLD_CASES = [
    (5, 3, 3, 2, 4, 5, 2, 2, 1),
    (7, 2, 4, 3, 3, (3, 2), (2, 3), (1, 0), (1, 2)),
    (3, 4, 2, 3, 2, 4, 2, 1, 0),
    (4, 5, 3, 4, 3, (2, 1), (3, 2), (0, 0), (2, 1)),
    (3, 4, 5, 4, 6, 3, 1, 1, 0),
    (6, 8, 4, 4, 5, 3, 2, 1, 1),
]


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _tol(dtype):
    return {"rtol": 1e-5, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12}


@pytest.fixture(params=["one image per tile", "three images per tile", "whole batch"])
def v6_tiles(request, monkeypatch):
    """v6 takes its phases channels-last from 1 channel on; tiles of 1 image, a few (the last one short), all."""
    monkeypatch.setattr(conv_module, "NHWC_MIN_CHANNELS", 1)
    per_image = {"one image per tile": 1, "three images per tile": None, "whole batch": 1 << 30}[request.param]
    return per_image


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, None])
@pytest.mark.parametrize("case", FOLD_CASES)
def test_v6_phase_folds_match_reference(rng, v6_tiles, monkeypatch, dtype, n, case):
    N, c, h, w, o, k, s, p, op = case
    N = N if n is None else n
    k, s, p, op = _pair(k), _pair(s), _pair(p), _pair(op)
    x = rng.standard_normal((N, c, h, w)).astype(dtype)
    W = rng.standard_normal((c, o, *k)).astype(dtype)
    b = rng.standard_normal(o).astype(dtype)
    want = R.conv_transpose2d_forward(x, W, b, s, p, op)
    if v6_tiles is None:  # three images' worth of the largest phase's columns
        phases, _ = v6._phases(v6._geometry(want.shape, k, s, p), *want.shape[2:])
        biggest = max([1] + [q.Ay * q.Ax * len(q.taps_i) * len(q.taps_j) * c for q in phases])
        monkeypatch.setattr(v6, "TILE_BYTES", 3 * biggest * x.itemsize)
    else:
        monkeypatch.setattr(v6, "TILE_BYTES", v6_tiles)
    y = v6.conv_transpose2d_forward(x, W, b, s, p, op)
    assert y.dtype == dtype and y.shape == want.shape
    np.testing.assert_allclose(y, want, **_tol(dtype))
    # The same fold as Conv2d's input gradient: dy has the transposed convolution's input shape.
    dx = v6.conv2d_backward_data(x, W, want.shape, s, p)
    np.testing.assert_allclose(dx, R.conv2d_backward_data(x, W, want.shape, s, p), **_tol(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_v4_snapshot_matches_reference(rng, dtype):
    x = rng.standard_normal((3, 17, 7, 6)).astype(dtype)
    W = rng.standard_normal((5, 17, 3, 3)).astype(dtype)
    y, cache = v4.conv2d_forward(x, W, None, (2, 2), (1, 1))
    y_ref, cols = R.conv2d_forward(x, W, None, (2, 2), (1, 1))
    np.testing.assert_allclose(y, y_ref, **_tol(dtype))
    dy = rng.standard_normal(y.shape).astype(dtype)
    np.testing.assert_allclose(
        v4.conv2d_backward_data(dy, W, x.shape, (2, 2), (1, 1)),
        R.conv2d_backward_data(dy, W, x.shape, (2, 2), (1, 1)),
        **_tol(dtype),
    )
    for got, want in zip(v4.conv2d_backward_weight(dy, cache, W.shape), R.conv2d_backward_weight(dy, cols, W.shape)):
        np.testing.assert_allclose(got, want, **_tol(dtype))


@pytest.mark.parametrize("hw", [(1, 1), (1, 7), (2, 4), (3, 5), (4, 4), (5, 7)])
def test_channel_sums_in_lanes_match_a_float64_sum(rng, hw):
    """Planes shorter than, equal to and longer than the lanes, with and without a tail; added onto sums."""
    a = rng.standard_normal((6, 4, *hw)).astype(np.float32)
    sums = rng.standard_normal(4)
    want = sums + a[1:5].astype(np.float64).sum(axis=(0, 2, 3))
    conv_module._channel_sums(a, 1, 4, sums)
    np.testing.assert_allclose(sums, want, rtol=1e-12, atol=1e-12)
