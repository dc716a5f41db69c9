"""backend.host_copies: a checkpoint's arrays brought to the host, one transfer per dtype from the GPU."""

import numpy as np
import pytest

from tinygan.backend import host_copies


def _arrays(xp):
    rng = np.random.default_rng(0)
    return {
        "w": xp.asarray(rng.standard_normal((3, 5)).astype(np.float32)),
        "b": xp.asarray(rng.standard_normal(5).astype(np.float32)),
        "mean": xp.asarray(rng.standard_normal(4)),  # float64
        "count": xp.asarray(np.int64(7)),  # 0-d
        "empty": xp.zeros((0, 3), dtype=np.float32),
        "strided": xp.asarray(rng.standard_normal((6, 4)).astype(np.float32))[:, ::2],  # not contiguous
    }


def test_host_copies_are_equal_independent_copies_in_the_same_order():
    arrays = _arrays(np)
    copies = host_copies(arrays)
    assert list(copies) == list(arrays)
    for key, value in arrays.items():
        assert isinstance(copies[key], np.ndarray) and copies[key].dtype == value.dtype, key
        np.testing.assert_array_equal(copies[key], value, err_msg=key)
    arrays["w"][...] = 0
    assert copies["w"].any()  # a copy, not a view of the source


@pytest.mark.gpu
def test_host_copies_of_device_arrays_match_each_arrays_own_transfer():
    cp = pytest.importorskip("cupy")
    arrays = _arrays(cp)
    arrays["host"] = np.arange(3.0)  # a host array among device ones
    copies = host_copies(arrays)
    assert list(copies) == list(arrays)
    for key, value in arrays.items():
        expected = cp.asnumpy(value)
        assert isinstance(copies[key], np.ndarray) and copies[key].dtype == expected.dtype, key
        assert copies[key].shape == expected.shape, key
        np.testing.assert_array_equal(copies[key], expected, err_msg=key)
    arrays["w"][...] = 0
    copies["b"][...] = 0  # one region of the shared host buffer: its neighbours keep their values
    np.testing.assert_array_equal(copies["w"], cp.asnumpy(_arrays(cp)["w"]))
