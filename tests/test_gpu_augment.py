"""DiffAugment's CUDA kernels (kernels/gpu/augment.py) against the NumPy reference, and
tinygan.augment.DiffAugment on the GPU with the Philox generator, eagerly and in a captured CUDA graph.

Every test needs a CUDA GPU (tests/conftest.py skips them with the reason otherwise). Outputs are
allocated from a pool whose free blocks were filled with NaN first, so an element a kernel forgets
to write shows up; sizes are odd, non-square, batch 1, and large enough for several blocks.
"""

from __future__ import annotations

import numpy as np
import pytest
from tinygan.kernels import reference as R

from tinygan.augment import AugmentParams, DiffAugment

cp = pytest.importorskip("cupy")
from gpu_streams import capture_stream  # noqa: E402  (needs CuPy)

pytestmark = pytest.mark.gpu

DTYPES = [np.float32, np.float64]
SHAPES = [(1, 3, 5, 7), (2, 3, 8, 8), (3, 1, 9, 4), (2, 2, 7, 11), (64, 3, 32, 32), (5, 3, 33, 17)]
POLICY = "translation,cutout,color"


def tol(dtype) -> dict:
    # Means are summed in double on the GPU and in the array's dtype (pairwise) by NumPy.
    return {"rtol": 1e-5, "atol": 1e-5} if np.dtype(dtype) == np.float32 else {"rtol": 1e-12, "atol": 1e-12}


def poison(shape, dtype) -> None:
    blocks = []
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    for _ in range(4):
        b = cp.empty(max(nbytes, 1), dtype=cp.uint8)
        b.fill(0xFF)
        blocks.append(b)
    cp.cuda.Device().synchronize()
    del blocks


def to_gpu(p: AugmentParams) -> AugmentParams:
    return AugmentParams(
        image_size=p.image_size,
        cutout_size=p.cutout_size,
        **{k: cp.asarray(v) for k, v in p.arrays().items()},
    )


def host_params(shape, dtype, seed):
    return DiffAugment(POLICY).sample_params(np.zeros(shape, dtype), np.random.default_rng(seed))


def calls(p: AugmentParams):
    """(name, kernel call) for the forward and backward of every transform, given a namespace."""
    return [
        ("brightness_forward", lambda M, a, q: M.brightness_forward(a, q.brightness)),
        ("brightness_backward", lambda M, a, q: M.brightness_backward(a, q.brightness)),
        ("saturation_forward", lambda M, a, q: M.saturation_forward(a, q.saturation)),
        ("saturation_backward", lambda M, a, q: M.saturation_backward(a, q.saturation)),
        ("contrast_forward", lambda M, a, q: M.contrast_forward(a, q.contrast)),
        ("contrast_backward", lambda M, a, q: M.contrast_backward(a, q.contrast)),
        ("translation_forward", lambda M, a, q: M.translation_forward(a, q.shift_h, q.shift_w)),
        ("translation_backward", lambda M, a, q: M.translation_backward(a, q.shift_h, q.shift_w)),
        ("cutout_forward", lambda M, a, q: M.cutout_forward(a, q.cutout_top, q.cutout_left, q.cutout_size)),
        ("cutout_backward", lambda M, a, q: M.cutout_backward(a, q.cutout_top, q.cutout_left, q.cutout_size)),
    ]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_kernels_match_reference(K, rng, dtype, shape):
    x = rng.standard_normal(shape).astype(dtype)
    p = host_params(shape, dtype, int(rng.integers(1000)))
    gp = to_gpu(p)
    for name, call in calls(p):
        poison(shape, dtype)
        got = call(K, cp.asarray(x), gp)
        ref = call(R, x, p)
        assert isinstance(got, cp.ndarray) and got.dtype == dtype and got.shape == shape, name
        host = cp.asnumpy(got)
        assert np.isfinite(host).all(), f"{name}: an element was not written"
        if name.startswith(("translation", "cutout", "brightness")):
            np.testing.assert_array_equal(host, ref, err_msg=name)  # copies, masks and one rounded add
        else:
            np.testing.assert_allclose(host, ref, **tol(dtype), err_msg=name)


@pytest.mark.parametrize("dtype", DTYPES)
def test_translation_and_cutout_at_and_beyond_the_edges(K, rng, dtype):
    shape = (6, 2, 5, 6)
    x = rng.standard_normal(shape).astype(dtype)
    p = AugmentParams(
        image_size=(5, 6),
        shift_h=np.array([5, -5, 0, 7, -2, 0], np.int32),
        shift_w=np.array([0, 2, -6, -1, 9, 0], np.int32),
        cutout_top=np.array([-3, 4, -1, 0, 5, -9], np.int32),
        cutout_left=np.array([-2, 5, 3, -9, 0, 6], np.int32),
        cutout_size=(3, 4),
    )
    gp = to_gpu(p)
    for name, call in calls(p)[6:]:
        poison(shape, dtype)
        np.testing.assert_array_equal(cp.asnumpy(call(K, cp.asarray(x), gp)), call(R, x, p), err_msg=name)


def test_64_bit_index_kernels_agree_with_the_32_bit_ones(K, rng, monkeypatch):
    from tinygan.kernels.gpu import _common

    x = cp.asarray(rng.standard_normal((3, 3, 9, 7)))
    gp = to_gpu(host_params(x.shape, np.float64, 5))
    narrow = [cp.asnumpy(call(K, x, gp)) for _, call in calls(gp)]
    monkeypatch.setattr(_common, "narrow", lambda *arrays: False)
    wide = [cp.asnumpy(call(K, x, gp)) for _, call in calls(gp)]
    for (name, _), a, b in zip(calls(gp), narrow, wide):
        np.testing.assert_array_equal(a, b, err_msg=name)


def test_kernels_name_the_op_and_argument_for_host_arrays(K):
    x = cp.zeros((2, 3, 4, 4), np.float32)
    with pytest.raises(TypeError, match="contrast_forward: x must be a CuPy array"):
        K.contrast_forward(np.zeros((2, 3, 4, 4), np.float32), cp.ones(2, np.float32))
    with pytest.raises(TypeError, match="translation_forward: shift_h must be a CuPy array"):
        K.translation_forward(x, np.zeros(2, np.int32), cp.zeros(2, np.int32))
    with pytest.raises(ValueError, match=r"cutout_forward: top must have one entry per sample, shape \(2,\)"):
        K.cutout_forward(x, cp.zeros(3, np.int32), cp.zeros(2, np.int32), (2, 2))


def test_uniforms_map_to_the_same_parameters_on_both_devices(rng):
    aug = DiffAugment(POLICY)
    u = rng.random((7, 50))
    shape = (50, 3, 32, 32)
    host = aug.params_from_uniforms(u, shape, np.float32)
    device = aug.params_from_uniforms(cp.asarray(u), shape, np.float32)
    for key, value in host.arrays().items():
        got = getattr(device, key)
        assert isinstance(got, cp.ndarray) and got.dtype == value.dtype, key
        np.testing.assert_array_equal(cp.asnumpy(got), value, err_msg=key)


@pytest.mark.parametrize("dtype", DTYPES)
def test_augment_parameters_matches_reference(K, rng, dtype):
    aug = DiffAugment(POLICY)
    table, n_int, fields = aug.plan(33, 17)
    u = rng.random((len(fields), 301))
    u[:, 0], u[:, 1] = 0.0, np.nextafter(1.0, 0.0)  # both ends of [0, 1)
    poison(u.shape, np.float64)
    ints, floats = K.augment_parameters(cp.asarray(u), cp.asarray(table), n_int, dtype)
    ref_ints, ref_floats = R.augment_parameters(u, table, n_int, dtype)
    assert ints.dtype == np.int32 and floats.dtype == dtype
    np.testing.assert_array_equal(cp.asnumpy(ints), ref_ints)
    np.testing.assert_array_equal(cp.asnumpy(floats), ref_floats)  # explicitly rounded: no fused multiply-add
    with pytest.raises(TypeError, match="augment_parameters: u must be a float64 CuPy array"):
        K.augment_parameters(cp.asarray(u, dtype=np.float32), cp.asarray(table), n_int, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_diffaugment_on_gpu_with_philox_matches_the_reference(rng, dtype):
    from tinygan.gpu_random import PhiloxGenerator

    aug = DiffAugment(POLICY)
    shape = (7, 3, 12, 10)
    x = rng.standard_normal(shape).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    y = aug.forward(cp.asarray(x), generator=PhiloxGenerator(3))
    dx = aug.backward(cp.asarray(dy))
    p = aug.last_params
    assert isinstance(p.shift_h, cp.ndarray) and p.brightness.dtype == dtype
    plans = aug.device_arrays()  # the plan, uploaded once, what a captured step reads
    assert len(plans) == 1 and isinstance(plans[0], cp.ndarray)
    aug.forward(cp.asarray(x), generator=PhiloxGenerator(4))
    assert aug.device_arrays()[0] is plans[0]
    host = AugmentParams(
        image_size=p.image_size, cutout_size=p.cutout_size, **{k: cp.asnumpy(v) for k, v in p.arrays().items()}
    )
    ref_aug = DiffAugment(POLICY)
    np.testing.assert_allclose(cp.asnumpy(y), ref_aug.forward(x, params=host), **tol(dtype))
    np.testing.assert_allclose(cp.asnumpy(dx), ref_aug.backward(dy), **tol(dtype))
    # The same draws again from the same seed; fresh ones from the advanced generator.
    again = DiffAugment(POLICY).forward(cp.asarray(x), generator=PhiloxGenerator(3))
    cp.testing.assert_array_equal(again, y)


def test_captured_graph_draws_fresh_parameters_like_eager(rng):
    """Forward with Philox draws and backward, captured as one CUDA graph: each replay equals the
    eager step from the same generator state, and replays differ from each other."""
    from tinygan.gpu_random import PhiloxGenerator

    shape = (9, 3, 16, 16)
    x = cp.asarray(rng.standard_normal(shape).astype(np.float32))
    dy = cp.asarray(rng.standard_normal(shape).astype(np.float32))
    aug = DiffAugment(POLICY)
    stream = capture_stream()
    with stream:
        gen = PhiloxGenerator(11)
        aug.forward(x, generator=gen)  # compile and fill the memory pool before capture
        aug.backward(dy)
        gen.load_state_dict({"seed": 11, "counter": 0})
        stream.synchronize()
        # As tinygan.cuda_graph.StepGraph captures: scratch memory from a pool of the graph's own.
        pool = cp.cuda.MemoryPool()
        with cp.cuda.using_allocator(pool.malloc):
            stream.begin_capture()
            y = aug.forward(x, generator=gen)
            dx = aug.backward(dy)
            graph = stream.end_capture()
        replays = []
        for _ in range(3):
            graph.launch(stream)
            stream.synchronize()
            replays.append((cp.asnumpy(y), cp.asnumpy(dx)))
    eager_gen, eager = PhiloxGenerator(11), DiffAugment(POLICY)
    for y_replay, dx_replay in replays:
        np.testing.assert_array_equal(y_replay, cp.asnumpy(eager.forward(x, generator=eager_gen)))
        np.testing.assert_array_equal(dx_replay, cp.asnumpy(eager.backward(dy)))
    assert not np.array_equal(replays[0][0], replays[1][0]), "a replay drew the same parameters again"


def test_composed_policy_gradient_on_gpu(rng):
    """Finite differences in float64 on the device, with parameters drawn by Philox, a random upstream
    gradient, an odd non-square batch."""
    from tinygan.gpu_random import PhiloxGenerator
    from tinygan.gradcheck import numerical_gradient, relative_error

    aug = DiffAugment(POLICY)
    x = cp.asarray(rng.standard_normal((2, 3, 7, 5)))
    params = aug.sample_params(x, PhiloxGenerator(2))
    upstream = cp.asarray(rng.standard_normal(x.shape))

    def loss() -> float:
        return float((aug.forward(x, params=params) * upstream).sum())

    aug.forward(x, params=params)
    analytic = aug.backward(upstream)
    assert relative_error(analytic, numerical_gradient(loss, x)) < 1e-8
