"""Conv2d and ConvTranspose2d: gradient checks, direct-formula forwards, the adjoint identity, the Numba
kernels against the reference, input errors and the DCGAN shapes."""

from __future__ import annotations

import numpy as np
import pytest
from tinygan.kernels import cpu as NB
from tinygan.kernels import reference as R

from tinygan import Dense
from tinygan.gradcheck import check_layer
from tinygan.layers.conv2d import Conv2d
from tinygan.layers.conv_transpose2d import ConvTranspose2d

# (N, C, H, W, O, kernel, stride, padding): stride > 1, padding > 0, non-square kernels and images, odd sizes,
# batch 1, C != O, stride larger than the kernel (skipped pixels), trailing rows no window reaches (8, k3, s2).
CONV_CASES = [
    (2, 3, 5, 6, 4, 3, 2, 1),
    (1, 2, 7, 4, 3, (3, 2), (2, 1), (1, 0)),
    (2, 1, 8, 5, 2, (2, 3), (3, 2), (0, 2)),
    (1, 3, 8, 7, 2, 3, 2, 0),
    (3, 2, 4, 4, 1, 1, 1, 0),
]

# (N, C_in, H, W, C_out, kernel, stride, padding, output_padding)
CONVT_CASES = [
    (2, 3, 3, 2, 2, 4, 2, 1, 1),
    (1, 2, 3, 4, 3, (3, 2), (2, 3), (1, 0), (1, 2)),
    (2, 2, 2, 3, 1, 5, 2, 2, 1),
    (2, 3, 4, 3, 2, 3, 1, 0, 0),
    (1, 1, 2, 2, 2, (2, 4), (3, 1), (0, 1), (2, 0)),
]


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _conv_layer(case, rng, dtype=np.float64):
    n, c, h, w, o, k, s, p = case
    layer = Conv2d(c, o, k, stride=s, padding=p, rng=rng, dtype=dtype)
    layer.params["b"][:] = rng.standard_normal(o)
    return layer, rng.standard_normal((n, c, h, w)).astype(dtype)


def _convt_layer(case, rng, dtype=np.float64):
    n, c, h, w, o, k, s, p, op = case
    layer = ConvTranspose2d(c, o, k, stride=s, padding=p, output_padding=op, rng=rng, dtype=dtype)
    layer.params["b"][:] = rng.standard_normal(o)
    return layer, rng.standard_normal((n, c, h, w)).astype(dtype)


# -- the definitions, as nested loops straight from the formulas -----------------------------------------


def naive_conv2d(x, W, b, stride, padding):
    """y[n, o, oh, ow] = b[o] + sum_{c, i, j} W[o, c, i, j] x[n, c, oh sh + i - ph, ow sw + j - pw]."""
    N, C, H, Wd = x.shape
    O, _, kh, kw = W.shape
    (sh, sw), (ph, pw) = stride, padding
    Ho, Wo = (H + 2 * ph - kh) // sh + 1, (Wd + 2 * pw - kw) // sw + 1
    y = np.empty((N, O, Ho, Wo))
    for n in range(N):
        for o in range(O):
            for oh in range(Ho):
                for ow in range(Wo):
                    acc = b[o]
                    for c in range(C):
                        for i in range(kh):
                            for j in range(kw):
                                hh, ww = oh * sh + i - ph, ow * sw + j - pw
                                if 0 <= hh < H and 0 <= ww < Wd:
                                    acc += W[o, c, i, j] * x[n, c, hh, ww]
                    y[n, o, oh, ow] = acc
    return y


def naive_conv_transpose2d(x, W, b, stride, padding, output_padding):
    """Every input pixel adds x[n, c, h, w] W[c, o, :, :] at output (h sh - ph, w sw - pw); then + b[o]."""
    N, C, H, Wd = x.shape
    _, O, kh, kw = W.shape
    (sh, sw), (ph, pw), (oph, opw) = stride, padding, output_padding
    Ho, Wo = (H - 1) * sh - 2 * ph + kh + oph, (Wd - 1) * sw - 2 * pw + kw + opw
    y = np.zeros((N, O, Ho, Wo)) + np.asarray(b).reshape(1, O, 1, 1)
    for n in range(N):
        for c in range(C):
            for h in range(H):
                for w in range(Wd):
                    for o in range(O):
                        for i in range(kh):
                            for j in range(kw):
                                oh, ow = h * sh + i - ph, w * sw + j - pw
                                if 0 <= oh < Ho and 0 <= ow < Wo:
                                    y[n, o, oh, ow] += x[n, c, h, w] * W[c, o, i, j]
    return y


# -- gradients ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_gradients(cpu_kernels, rng, case):
    layer, x = _conv_layer(case, rng)
    errors = check_layer(layer, x, rng)
    assert set(errors) == {"x", "W", "b"}
    assert max(errors.values()) < 1e-6, errors


@pytest.mark.parametrize("case", CONVT_CASES)
def test_conv_transpose2d_gradients(cpu_kernels, rng, case):
    layer, x = _convt_layer(case, rng)
    errors = check_layer(layer, x, rng)
    assert set(errors) == {"x", "W", "b"}
    assert max(errors.values()) < 1e-6, errors


# -- forward against the definition -------------------------------------------------------------------


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_forward_matches_definition(cpu_kernels, rng, case):
    layer, x = _conv_layer(case, rng)
    y = layer.forward(x)
    expected = naive_conv2d(x, layer.params["W"], layer.params["b"], layer.stride, layer.padding)
    assert y.shape == expected.shape == layer.output_shape(x.shape)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CONVT_CASES)
def test_conv_transpose2d_forward_matches_definition(cpu_kernels, rng, case):
    layer, x = _convt_layer(case, rng)
    y = layer.forward(x)
    W, b = layer.params["W"], layer.params["b"]
    expected = naive_conv_transpose2d(x, W, b, layer.stride, layer.padding, layer.output_padding)
    assert y.shape == expected.shape == layer.output_shape(x.shape)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_transpose2d_is_the_adjoint_of_conv2d(cpu_kernels, rng, case):
    """<conv(x), y> = <x, convT(y)> for shared W and zero bias. output_padding picks convT's output size equal
    to x's; it is 0 whenever the windows tile the padded input exactly."""
    n, c, h, w, o, k, s, p = case
    conv = Conv2d(c, o, k, stride=s, padding=p, rng=rng, dtype=np.float64)
    (kh, kw), (sh, sw), (ph, pw) = conv.kernel_size, conv.stride, conv.padding
    op = ((h + 2 * ph - kh) % sh, (w + 2 * pw - kw) % sw)
    convt = ConvTranspose2d(o, c, k, stride=s, padding=p, output_padding=op, rng=rng, dtype=np.float64)
    convt.params["W"] = conv.params["W"]
    x = rng.standard_normal((n, c, h, w))
    y = rng.standard_normal(conv.output_shape(x.shape))
    lhs = float((conv.forward(x) * y).sum())
    rhs = float((x * convt.forward(y)).sum())
    assert convt.output_shape(y.shape) == x.shape
    np.testing.assert_allclose(lhs, rhs, rtol=1e-12)


def test_adjoint_cases_include_output_padding_zero():
    zero = [
        c
        for c in CONV_CASES
        if all((h + 2 * p - k) % s == 0 for h, k, s, p in zip(c[2:4], _pair(c[5]), _pair(c[6]), _pair(c[7])))
    ]
    assert len(zero) >= 2


# -- the Numba kernels against the reference ----------------------------------------------------------


def _tol(dtype):
    return {"rtol": 1e-5, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CONV_CASES)
def test_numba_conv2d_kernels_match_reference(rng, dtype, case):
    n, c, h, w, o, k, s, p = case
    k, s, p = _pair(k), _pair(s), _pair(p)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    W = rng.standard_normal((o, c, *k)).astype(dtype)
    b = rng.standard_normal(o).astype(dtype)
    cols = NB.im2col(x, k, s, p)
    np.testing.assert_array_equal(cols, R.im2col(x, k, s, p))  # a copy: exact
    assert cols.dtype == dtype and cols.flags.c_contiguous
    fresh = rng.standard_normal(cols.shape).astype(dtype)
    np.testing.assert_allclose(NB.col2im(fresh, x.shape, k, s, p), R.col2im(fresh, x.shape, k, s, p), **_tol(dtype))
    y, cols = NB.conv2d_forward(x, W, b, s, p)
    y_ref, cols_ref = R.conv2d_forward(x, W, b, s, p)
    assert y.dtype == dtype and y.flags.c_contiguous
    np.testing.assert_allclose(y, y_ref, **_tol(dtype))
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = NB.conv2d_backward_data(dy, W, x.shape, s, p)
    assert dx.dtype == dtype
    np.testing.assert_allclose(dx, R.conv2d_backward_data(dy, W, x.shape, s, p), **_tol(dtype))
    for got, want in zip(NB.conv2d_backward_weight(dy, cols, W.shape), R.conv2d_backward_weight(dy, cols_ref, W.shape)):
        assert got.dtype == dtype
        np.testing.assert_allclose(got, want, **_tol(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CONVT_CASES)
def test_numba_conv_transpose2d_kernels_match_reference(rng, dtype, case):
    n, c, h, w, o, k, s, p, op = case
    k, s, p, op = _pair(k), _pair(s), _pair(p), _pair(op)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    W = rng.standard_normal((c, o, *k)).astype(dtype)
    b = rng.standard_normal(o).astype(dtype)
    y = NB.conv_transpose2d_forward(x, W, b, s, p, op)
    assert y.dtype == dtype
    np.testing.assert_allclose(y, R.conv_transpose2d_forward(x, W, b, s, p, op), **_tol(dtype))
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx, dy_cols = NB.conv_transpose2d_backward_data(dy, W, s, p)
    dx_ref, dy_cols_ref = R.conv_transpose2d_backward_data(dy, W, s, p)
    assert dx.shape == x.shape and dx.dtype == dtype
    np.testing.assert_allclose(dx, dx_ref, **_tol(dtype))
    np.testing.assert_array_equal(dy_cols, dy_cols_ref)
    want = R.conv_transpose2d_backward_weight(dy, x, W.shape, s, p)
    for cached in (None, dy_cols):
        for got, ref in zip(NB.conv_transpose2d_backward_weight(dy, x, W.shape, s, p, dy_cols=cached), want):
            np.testing.assert_allclose(got, ref, **_tol(dtype))


def test_numba_col2im_is_a_deterministic_sum_of_patches(rng):
    cols = rng.standard_normal((3 * 5 * 5, 4 * 8 * 8)).astype(np.float32)
    a = NB.col2im(cols, (4, 3, 16, 16), (5, 5), (2, 2), (2, 2))
    b = NB.col2im(cols.copy(), (4, 3, 16, 16), (5, 5), (2, 2), (2, 2))
    np.testing.assert_array_equal(a, b)
    # all-ones columns count, for every pixel, the windows that cover it
    ones = NB.col2im(np.ones((1 * 3 * 3, 1 * 2 * 2)), (1, 1, 5, 5), (3, 3), (2, 2), (0, 0))
    counts = np.array([[1, 1, 2, 1, 1]] * 2 + [[2, 2, 4, 2, 2]] + [[1, 1, 2, 1, 1]] * 2, dtype=float)
    np.testing.assert_array_equal(ones[0, 0], counts)


@pytest.mark.parametrize("K", [R, NB], ids=["reference", "numba"])
def test_kernels_reject_output_padding_not_below_stride(K, rng):
    x, W = rng.standard_normal((1, 2, 3, 3)), rng.standard_normal((2, 3, 3, 3))
    with pytest.raises(ValueError, match="output_padding"):
        K.conv_transpose2d_forward(x, W, np.zeros(3), (2, 2), (1, 1), (2, 0))


def test_numba_kernels_check_the_sizes_their_loops_trust(rng):
    with pytest.raises(ValueError, match="cols of shape"):
        NB.col2im(rng.standard_normal((5, 7)), (1, 1, 4, 4), (2, 2), (1, 1), (0, 0))
    with pytest.raises(ValueError, match="smaller than the kernel"):
        NB.im2col(rng.standard_normal((1, 1, 2, 2)), (3, 3), (1, 1), (0, 0))
    with pytest.raises(ValueError, match="does not match W"):
        NB.conv2d_forward(rng.standard_normal((1, 2, 4, 4)), rng.standard_normal((3, 4, 3, 3)), None, (1, 1), (0, 0))


# -- layer behaviour -------------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [_conv_layer, _convt_layer], ids=["Conv2d", "ConvTranspose2d"])
def test_grads_accumulate_and_flags_are_honoured(cpu_kernels, rng, make):
    layer, x = make(CONV_CASES[0] if make is _conv_layer else CONVT_CASES[0], rng)
    y = layer.forward(x)
    dy = rng.standard_normal(y.shape)
    layer.zero_grad()
    dx = layer.backward(dy)
    assert dx.shape == x.shape
    once = {k: g.copy() for k, g in layer.grads.items()}
    assert all(np.abs(g).sum() > 0 for g in once.values())
    layer.backward(dy)
    for k in once:
        np.testing.assert_allclose(layer.grads[k], 2 * once[k], rtol=1e-12)
    np.testing.assert_allclose(layer.backward(dy, param_grads=False), dx, rtol=1e-12)
    for k in once:
        np.testing.assert_allclose(layer.grads[k], 2 * once[k], rtol=1e-12)
    assert layer.backward(dy, input_grad=False) is None
    for k in once:
        np.testing.assert_allclose(layer.grads[k], 3 * once[k], rtol=1e-12)


def test_glorot_uniform_init_is_seeded_and_bounded():
    conv, conv2 = Conv2d(64, 128, 3, rng=5), Conv2d(64, 128, 3, rng=5)
    np.testing.assert_array_equal(conv.params["W"], conv2.params["W"])
    assert conv.params["W"].shape == (128, 64, 3, 3) and conv.params["W"].dtype == np.float32
    limit = np.sqrt(6 / ((64 + 128) * 9))
    assert limit * 0.95 < np.abs(conv.params["W"]).max() <= limit
    assert not conv.params["b"].any()
    convt = ConvTranspose2d(128, 64, 5, stride=2, padding=2, output_padding=1, rng=5)
    assert convt.params["W"].shape == (128, 64, 5, 5)
    limit = np.sqrt(6 / ((64 + 128) * 25))
    assert limit * 0.95 < np.abs(convt.params["W"]).max() <= limit
    assert not convt.params["b"].any()


def test_int_and_pair_arguments():
    a = Conv2d(2, 3, 3, stride=2, padding=1)
    b = Conv2d(2, 3, (3, 3), stride=(2, 2), padding=[1, 1])
    assert (a.kernel_size, a.stride, a.padding) == (b.kernel_size, b.stride, b.padding) == ((3, 3), (2, 2), (1, 1))
    t = ConvTranspose2d(2, 3, (5, 3), stride=(2, 3), padding=(2, 0), output_padding=(1, 2))
    assert t.output_shape((4, 2, 4, 5)) == (4, 3, 8, 17)
    assert repr(t) == (
        "ConvTranspose2d(2, 3, kernel_size=(5, 3), stride=(2, 3), padding=(2, 0), output_padding=(1, 2))"
    )
    for bad in ({"kernel_size": 0}, {"kernel_size": (3, 3, 3)}, {"stride": 0}, {"padding": -1}, {"kernel_size": 2.5}):
        args = {"kernel_size": 3, **bad}
        with pytest.raises(ValueError, match="Conv2d"):
            Conv2d(2, 3, **args)


def test_output_padding_must_be_below_stride():
    with pytest.raises(ValueError, match=r"ConvTranspose2d: output_padding \(2, 2\) must be smaller than stride"):
        ConvTranspose2d(4, 2, 5, stride=2, padding=2, output_padding=2)
    with pytest.raises(ValueError, match="output_padding"):
        ConvTranspose2d(4, 2, 3, stride=(2, 1), output_padding=(1, 1))
    ConvTranspose2d(4, 2, 3, stride=(2, 2), output_padding=(1, 1))


def test_bad_input_errors_name_the_layer():
    conv = Conv2d(3, 4, 3, padding=1)
    with pytest.raises(ValueError, match=r"Conv2d: expected input of shape \(N, 3, N, N\), received \(2, 5, 8, 8\)"):
        conv.forward(np.zeros((2, 5, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"Conv2d: expected input of shape \(N, 3, N, N\), received \(2, 3, 8\)"):
        conv.forward(np.zeros((2, 3, 8), np.float32))
    with pytest.raises(ValueError, match="Conv2d: expected input of dtype float32, received float64"):
        conv.forward(np.zeros((2, 3, 8, 8), np.float64))
    with pytest.raises(ValueError, match=r"Conv2d.*smaller than the kernel"):
        Conv2d(3, 4, (3, 5)).forward(np.zeros((2, 3, 8, 4), np.float32))
    convt = ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1)
    with pytest.raises(ValueError, match=r"ConvTranspose2d: expected input of shape \(N, 4, N, N\), received \(1, 2"):
        convt.forward(np.zeros((1, 2, 3, 3), np.float32))
    with pytest.raises(ValueError, match="ConvTranspose2d: expected input of dtype float32, received int64"):
        convt.forward(np.zeros((1, 4, 3, 3), np.int64))
    with pytest.raises(ValueError, match="ConvTranspose2d.*empty output"):
        ConvTranspose2d(4, 2, 1, padding=1).forward(np.zeros((1, 4, 1, 1), np.float32))
    for layer in (Conv2d(3, 4, 3), ConvTranspose2d(3, 4, 3)):
        with pytest.raises(RuntimeError, match="before forward"):
            layer.backward(np.zeros((1, 4, 3, 3), np.float32))
        y = layer.forward(np.zeros((1, 3, 5, 5), np.float32))
        with pytest.raises(ValueError, match="upstream gradient"):
            layer.backward(np.zeros((1, 4, y.shape[2] + 1, y.shape[3]), np.float32))


def test_errors_inside_a_sequential_carry_its_name():
    from tinygan import Sequential

    model = Sequential(Conv2d(3, 8, 3, padding=1), Conv2d(8, 4, 3, stride=2, padding=1), name="D")
    with pytest.raises(ValueError, match=r"D\[0\] Conv2d\(3, 8, kernel_size=\(3, 3\).*\(N, 3, N, N\).*\(2, 1, 8, 8\)"):
        model.forward(np.zeros((2, 1, 8, 8), np.float32))


# -- DCGAN shapes ------------------------------------------------------------------------------------------


def test_dcgan_discriminator_convs(cpu_kernels):
    convs = [Conv2d(3, 64, 3, padding=1), Conv2d(64, 128, 3, stride=2, padding=1)]
    convs += [Conv2d(128, 128, 3, stride=2, padding=1), Conv2d(128, 32, 3, stride=2, padding=1)]
    shapes = [(2, 64, 32, 32), (2, 128, 16, 16), (2, 128, 8, 8), (2, 32, 4, 4)]
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    for layer, shape in zip(convs, shapes):
        assert layer.output_shape(x.shape) == shape
        x = layer.forward(x)
        assert x.shape == shape and x.dtype == np.float32
    assert [c.num_parameters() for c in convs] == [1_792, 73_856, 147_584, 36_896]
    assert int(np.prod(x.shape[1:])) == 512
    assert sum(c.num_parameters() for c in convs) + Dense(512, 1).num_parameters() == 260_641


def test_dcgan_generator_transposed_convs(cpu_kernels):
    ups = [ConvTranspose2d(128, 128, 5, stride=2, padding=2, output_padding=1)]
    ups += [ConvTranspose2d(128, 64, 5, stride=2, padding=2, output_padding=1)]
    ups += [ConvTranspose2d(64, 3, 5, stride=2, padding=2, output_padding=1)]
    shapes = [(2, 128, 8, 8), (2, 64, 16, 16), (2, 3, 32, 32)]
    x = np.random.default_rng(0).standard_normal((2, 128, 4, 4)).astype(np.float32)
    for layer, shape in zip(ups, shapes):
        assert layer.output_shape(x.shape) == shape
        x = layer.forward(x)
        assert x.shape == shape and x.dtype == np.float32
        assert layer.backward(np.ones(shape, np.float32)).shape == layer.cache.x.shape
    assert [u.num_parameters() for u in ups] == [409_728, 204_864, 4_803]
