"""DiffAugment (tinygan.augment) and its kernels: gradient checks in float64 against finite
differences with a random upstream gradient, Numba against the reference on fresh inputs, the
transforms against a literal NumPy port of DiffAugment's index arithmetic, the parameter ranges,
reuse of one draw on two batches, and the errors."""

from __future__ import annotations

import numpy as np
import pytest
import tinygan.kernels.cpu as numba_kernels
import tinygan.kernels.reference as reference_kernels

from tinygan.augment import AugmentParams, DiffAugment, parse_policy
from tinygan.backend import kernels
from tinygan.gradcheck import numerical_gradient, relative_error

# (N, C, H, W): batch 1, odd and non-square images, one channel, and DCGAN's 3x32x32.
SHAPES = [(1, 3, 5, 7), (2, 3, 8, 8), (3, 1, 9, 4), (2, 2, 7, 11), (2, 3, 32, 32)]
GRAD_SHAPES = SHAPES[:4]  # finite differences cost two forwards per element


def _params(shape, policy="translation,cutout,color", seed=0):
    return DiffAugment(policy).sample_params(np.zeros(shape), np.random.default_rng(seed))


def _ops(p: AugmentParams):
    """(name, forward(K, x), backward(K, dy)) for each transform with the parameters ``p``."""
    return [
        (
            "brightness",
            lambda K, x: K.brightness_forward(x, p.brightness),
            lambda K, d: K.brightness_backward(d, p.brightness),
        ),
        (
            "saturation",
            lambda K, x: K.saturation_forward(x, p.saturation),
            lambda K, d: K.saturation_backward(d, p.saturation),
        ),
        ("contrast", lambda K, x: K.contrast_forward(x, p.contrast), lambda K, d: K.contrast_backward(d, p.contrast)),
        (
            "translation",
            lambda K, x: K.translation_forward(x, p.shift_h, p.shift_w),
            lambda K, d: K.translation_backward(d, p.shift_h, p.shift_w),
        ),
        (
            "cutout",
            lambda K, x: K.cutout_forward(x, p.cutout_top, p.cutout_left, p.cutout_size),
            lambda K, d: K.cutout_backward(d, p.cutout_top, p.cutout_left, p.cutout_size),
        ),
    ]


def _gradcheck(forward, backward, x, rng):
    upstream = rng.standard_normal(forward(x).shape)
    analytic = backward(upstream)
    numeric = numerical_gradient(lambda: float((forward(x) * upstream).sum()), x)
    return relative_error(analytic, numeric)


# -- gradients -------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", GRAD_SHAPES)
@pytest.mark.parametrize("op", ["brightness", "saturation", "contrast", "translation", "cutout"])
def test_each_transform_gradient(rng, cpu_kernels, shape, op):
    K = kernels("cpu")
    p = _params(shape, seed=shape[2])
    _, fwd, bwd = next(o for o in _ops(p) if o[0] == op)
    x = rng.standard_normal(shape)
    error = _gradcheck(lambda v: fwd(K, v), lambda d: bwd(K, d), x, rng)
    assert error < 1e-8, (op, shape, error)


@pytest.mark.parametrize("op", ["translation", "cutout"])
def test_gradient_with_parameters_at_and_beyond_the_edges(rng, cpu_kernels, op):
    """Shifts of the whole image and more (all zero), rectangles hanging off every side."""
    K = kernels("cpu")
    shape = (4, 2, 5, 6)
    p = AugmentParams(
        image_size=(5, 6),
        shift_h=np.array([5, -5, 0, 7], np.int32),
        shift_w=np.array([0, 2, -6, -1], np.int32),
        cutout_top=np.array([-3, 4, -1, 0], np.int32),
        cutout_left=np.array([-2, 5, 3, -9], np.int32),
        cutout_size=(3, 4),
    )
    _, fwd, bwd = next(o for o in _ops(p) if o[0] == op)
    x = rng.standard_normal(shape)
    assert _gradcheck(lambda v: fwd(K, v), lambda d: bwd(K, d), x, rng) < 1e-8
    if op == "translation":
        assert not fwd(K, x)[0].any() and not fwd(K, x)[3].any()  # shifted out entirely


@pytest.mark.parametrize("shape", GRAD_SHAPES)
@pytest.mark.parametrize("policy", ["translation,cutout,color", "color,translation,cutout", "cutout"])
def test_composed_policy_gradient(rng, cpu_kernels, shape, policy):
    aug = DiffAugment(policy)
    params = aug.sample_params(np.zeros(shape), np.random.default_rng(shape[3]))
    x = rng.standard_normal(shape)

    def forward(v):
        return aug.forward(v, params=params)

    error = _gradcheck(forward, lambda d: (forward(x), aug.backward(d))[1], x, rng)
    assert error < 1e-8, (policy, shape, error)


def test_gradient_check_can_fail(rng):
    """The check above sees a wrong backward: translation's backward with the forward's own shifts."""
    K = reference_kernels
    p = _params((2, 3, 6, 5), "translation", seed=3)
    assert (p.shift_h != 0).any() or (p.shift_w != 0).any()
    x = rng.standard_normal((2, 3, 6, 5))

    def wrong(d):
        return K.translation_forward(d, p.shift_h, p.shift_w)

    assert _gradcheck(lambda v: K.translation_forward(v, p.shift_h, p.shift_w), wrong, x, rng) > 1e-2


# -- Numba against the reference -------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_numba_matches_reference(rng, numba_threads, dtype, shape):
    x = rng.standard_normal(shape).astype(dtype)
    p = DiffAugment("translation,cutout,color").sample_params(x, np.random.default_rng(int(rng.integers(1000))))
    dy = rng.standard_normal(shape).astype(dtype)
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12}
    for name, fwd, bwd in _ops(p):
        for fn, arg in ((fwd, x), (bwd, dy)):
            got, ref = fn(numba_kernels, arg), fn(reference_kernels, arg)
            assert got.dtype == dtype and got.shape == shape, name
            np.testing.assert_allclose(got, ref, **tol, err_msg=name)


def test_kernels_accept_non_contiguous_input(rng):
    x = rng.standard_normal((2, 5, 7, 3)).transpose(0, 3, 1, 2)  # (2, 3, 5, 7), not C-contiguous
    p = _params(x.shape, seed=9)
    for name, fwd, _ in _ops(p):
        np.testing.assert_allclose(fwd(numba_kernels, x), fwd(reference_kernels, x), rtol=1e-12, err_msg=name)


# -- what the transforms are -----------------------------------------------------------------------


def _diffaugment_translation(x, tx, ty):
    """DiffAugment's rand_translation with given shifts, its index arithmetic ported literally:
    pad by one pixel of zeros, clamp the shifted grid into the padded image, gather."""
    n, _, h, w = x.shape
    gb, gx, gy = np.meshgrid(np.arange(n), np.arange(h), np.arange(w), indexing="ij")
    gx = np.clip(gx + tx.reshape(-1, 1, 1) + 1, 0, h + 1)
    gy = np.clip(gy + ty.reshape(-1, 1, 1) + 1, 0, w + 1)
    pad = np.pad(x, [(0, 0), (0, 0), (1, 1), (1, 1)])
    return pad.transpose(0, 2, 3, 1)[gb, gx, gy].transpose(0, 3, 1, 2)


def _diffaugment_cutout(x, offset_x, offset_y, size):
    """DiffAugment's rand_cutout with given offsets (the square's centre), ported literally."""
    n, _, h, w = x.shape
    gb, gx, gy = np.meshgrid(np.arange(n), np.arange(size[0]), np.arange(size[1]), indexing="ij")
    gx = np.clip(gx + offset_x.reshape(-1, 1, 1) - size[0] // 2, 0, h - 1)
    gy = np.clip(gy + offset_y.reshape(-1, 1, 1) - size[1] // 2, 0, w - 1)
    mask = np.ones((n, h, w), x.dtype)
    mask[gb, gx, gy] = 0
    return x * mask[:, None]


@pytest.mark.parametrize("shape", SHAPES)
def test_translation_and_cutout_are_diffaugments(rng, shape):
    aug = DiffAugment("translation,cutout")
    x = rng.standard_normal(shape)
    for seed in range(4):
        p = aug.sample_params(x, np.random.default_rng(seed))
        expected = _diffaugment_translation(x, p.shift_h, p.shift_w)
        np.testing.assert_array_equal(reference_kernels.translation_forward(x, p.shift_h, p.shift_w), expected)
        sh, sw = p.cutout_size
        offsets = (p.cutout_top + sh // 2, p.cutout_left + sw // 2)
        expected = _diffaugment_cutout(x, *offsets, p.cutout_size)
        got = reference_kernels.cutout_forward(x, p.cutout_top, p.cutout_left, p.cutout_size)
        np.testing.assert_array_equal(got, expected)


def test_colour_transforms_follow_diffaugments_formulas(rng):
    x = rng.standard_normal((3, 3, 6, 5))
    b, s, c = rng.random(3), 2 * rng.random(3), rng.random(3) + 0.5
    K = reference_kernels
    np.testing.assert_allclose(K.brightness_forward(x, b), x + b[:, None, None, None])
    mu = x.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(K.saturation_forward(x, s), (x - mu) * s[:, None, None, None] + mu)
    mu = x.mean(axis=(1, 2, 3), keepdims=True)
    np.testing.assert_allclose(K.contrast_forward(x, c), (x - mu) * c[:, None, None, None] + mu)


def test_parameter_ranges_match_diffaugment():
    """Every value DiffAugment can draw, and nothing else: shifts in [-r, r] with r = int(size/8 + 0.5),
    cutout centres in [0, size - s % 2] for a square of s = int(size/2 + 0.5), colour factors in
    [-0.5, 0.5), [0, 2), [0.5, 1.5)."""
    aug = DiffAugment("translation,cutout,color")
    h, w = 32, 9
    n = 4000
    p = aug.sample_params(np.zeros((n, 3, h, w), np.float32), np.random.default_rng(0))
    assert set(p.shift_h.tolist()) == set(range(-4, 5)) and set(p.shift_w.tolist()) == set(range(-1, 2))
    assert p.cutout_size == (16, 5)
    assert set((p.cutout_top + 8).tolist()) == set(range(0, 33))
    assert set((p.cutout_left + 2).tolist()) == set(range(0, 9))  # odd square: centres 0..W-1
    for values, low, high in ((p.brightness, -0.5, 0.5), (p.saturation, 0.0, 2.0), (p.contrast, 0.5, 1.5)):
        assert values.dtype == np.float32
        assert values.min() >= low and values.max() < high and values.max() - values.min() > 0.9 * (high - low)
    # The largest uniform below 1 stays inside the ranges.
    u = np.full((7, 2), np.nextafter(1.0, 0.0))
    q = aug.params_from_uniforms(u, (2, 3, h, w), np.float64)
    assert q.shift_h.tolist() == [4, 4] and q.cutout_top.tolist() == [32 - 8] * 2


def test_augment_parameters_equations_and_errors():
    u = np.array([[0.0, 0.5, np.nextafter(1.0, 0.0)], [0.0, 0.25, 0.999]])
    plan = np.array([[9.0, -4.0], [2.0, -0.5]])  # one integer row (count 9, low -4), one float row
    ints, floats = reference_kernels.augment_parameters(u, plan, 1, np.float32)
    assert ints.dtype == np.int32 and ints.tolist() == [[-4, 0, 4]]
    assert floats.dtype == np.float32 and np.allclose(floats, [[-0.5, 0.0, 1.498]])
    with pytest.raises(ValueError, match=r"augment_parameters: expected u \(rows, N\) and plan \(rows, 2\)"):
        reference_kernels.augment_parameters(u, plan[:1], 1, np.float32)


# -- one draw, two batches -------------------------------------------------------------------------


def test_same_params_give_the_same_transform_on_two_batches(rng):
    aug = DiffAugment("translation,cutout,color")
    real, fake = rng.standard_normal((2, 5, 3, 8, 6))
    p = aug.sample_params(real, np.random.default_rng(4))
    y_real, y_fake = aug.forward(real, params=p), aug.forward(fake, params=p)
    # One draw on the batch laid end to end, as D's [real; fake] input, gives the same images.
    both = aug.forward(np.concatenate([real, fake]), params=p.repeat(2))
    np.testing.assert_allclose(both, np.concatenate([y_real, y_fake]), rtol=1e-14, atol=1e-14)
    # The same image in both batches comes out the same; the transforms are affine with the same map.
    fake[2] = real[2]
    np.testing.assert_array_equal(aug.forward(fake, params=p)[2], y_real[2])
    lin = aug.forward(real - fake, params=p) - aug.forward(np.zeros_like(real), params=p)
    np.testing.assert_allclose(lin, y_real - aug.forward(fake, params=p), atol=1e-12)


def test_draws_are_reproducible_and_fresh(rng):
    x = rng.standard_normal((4, 3, 8, 8))
    a, b = DiffAugment("translation,cutout,color"), DiffAugment("translation,cutout,color")
    ya = a.forward(x, generator=np.random.default_rng(7))
    np.testing.assert_array_equal(ya, b.forward(x, generator=np.random.default_rng(7)))
    gen = np.random.default_rng(7)
    first = a.forward(x, generator=gen)
    assert not np.array_equal(first, a.forward(x, generator=gen))
    assert a.device_arrays() == []  # host batches upload nothing
    # backward uses the latest forward's parameters.
    dy = rng.standard_normal(x.shape)
    c = DiffAugment("translation,cutout,color")
    c.forward(x, params=a.last_params)
    np.testing.assert_array_equal(a.backward(dy), c.backward(dy))


def test_empty_policy_is_the_identity(rng):
    aug = DiffAugment("none")
    x = rng.standard_normal((2, 3, 4, 4))
    assert not aug.enabled
    assert aug.forward(x, generator=np.random.default_rng(0)) is x
    assert aug.backward(x) is x


# -- errors ----------------------------------------------------------------------------------------


def test_policy_errors_name_the_option_and_the_choices():
    with pytest.raises(ValueError, match=r"--augment: unknown augmentation 'flip'.*color, translation, cutout"):
        DiffAugment("translation,flip")
    with pytest.raises(ValueError, match="listed twice"):
        parse_policy("color, color")
    with pytest.raises(ValueError, match="--diffaug: unknown"):
        parse_policy("Color", option="--diffaug")
    with pytest.raises(ValueError, match="cutout_ratio must lie in"):
        DiffAugment("cutout", cutout_ratio=1.5)
    assert parse_policy(["color", "cutout"]) == ("brightness", "saturation", "contrast", "cutout")


def test_forward_and_backward_errors(rng):
    aug = DiffAugment("translation,color")
    x = rng.standard_normal((2, 3, 6, 6))
    gen = np.random.default_rng(0)
    with pytest.raises(RuntimeError, match="before forward"):
        aug.backward(x)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\) float32 or float64.*\(2, 3, 6\)"):
        aug.forward(x[..., 0], generator=gen)
    with pytest.raises(ValueError, match="float32 or float64.*int64"):
        aug.forward(x.astype(np.int64), generator=gen)
    with pytest.raises(ValueError, match="exactly one of generator= and params="):
        aug.forward(x)
    with pytest.raises(TypeError, match="numpy.random.Generator or a tinygan.gpu_random.PhiloxGenerator.*int"):
        aug.forward(x, generator=3)
    p = aug.sample_params(x, gen)
    with pytest.raises(ValueError, match=r"drawn for 2 images of \(6, 6\), the batch has 4 of \(6, 6\).*repeat"):
        aug.forward(np.concatenate([x, x]), params=p)
    with pytest.raises(ValueError, match="no cutout parameters"):
        DiffAugment("cutout").forward(x, params=p)
    aug.forward(x, params=p)
    with pytest.raises(ValueError, match=r"upstream gradient of shape \(2, 3, 6, 5\)"):
        aug.backward(x[..., :5].copy())
    with pytest.raises(ValueError, match=r"translation_forward: shift_h must have one entry per sample"):
        numba_kernels.translation_forward(x, p.shift_h[:1], p.shift_w)
    with pytest.raises(ValueError, match=r"contrast_forward: expected an \(N, C, H, W\) batch"):
        reference_kernels.contrast_forward(x[0], p.contrast)
