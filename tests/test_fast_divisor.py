"""tinygan.kernels.fastdiv: n // d as a multiply-high and a shift for every 0 <= n < 2**31 (col2im, layouts)."""

import numpy as np
import pytest
from tinygan.kernels.fastdiv import fast_div_args, fast_divisor


def _device_division(n: np.ndarray, d: int) -> np.ndarray:
    """_common.cu's fast_div on the host: umulhi(n, mul) >> shift in unsigned 32-bit terms."""
    _, mul, shift = fast_divisor(d)
    if d == 1:
        return n
    return ((n.astype(np.uint64) * np.uint64(mul)) >> np.uint64(32)) >> np.uint64(shift)


DIVISORS = [*range(1, 300), 511, 512, 513, 1000, 4095, 4097, 65535, 65536, 65537, 10**6, 2**30 - 1, 2**30, 2**31 - 1]


@pytest.mark.parametrize("d", DIVISORS)
def test_fast_division_equals_integer_division(d):
    rng = np.random.default_rng(d)
    top = 2**31 - 1
    k = np.arange(0, 4096, dtype=np.int64)
    n = np.concatenate(
        [
            np.arange(0, 70_000, dtype=np.int64),  # every small dividend
            rng.integers(0, 2**31, 200_000, dtype=np.int64),
            top - np.arange(0, 70_000, dtype=np.int64),  # the largest ones
            *(np.clip(m * d + off, 0, top) for m in (k, top // d - k) for off in (-1, 0, 1)),  # around multiples
        ]
    )
    mul = fast_divisor(d)[1]
    assert 0 <= mul < 2**32  # it is passed as a 32-bit unsigned kernel argument
    np.testing.assert_array_equal(_device_division(n.astype(np.uint64), d), (n // d).astype(np.uint64))


def test_fast_divisor_refuses_what_it_cannot_divide_by():
    for d in (0, -3, 2**31):
        with pytest.raises(ValueError, match="fast_divisor: expected 1 <= d < 2\\*\\*31"):
            fast_divisor(d)


def test_kernel_arguments_are_mul_and_shift_per_divisor_as_uint32():
    args = fast_div_args(7, 1, 2**31 + 5, 0)
    assert [type(a) for a in args] == [np.uint32] * 8
    assert [int(a) for a in args[6:]] == [0, 0]  # an empty launch: no element is divided
    assert [int(a) for a in args[:2]] == list(fast_divisor(7)[1:])
    assert [int(a) for a in args[2:4]] == [0, 0]  # d == 1: the kernel passes n through
    # Only a 64-bit launch meets a divisor past 2**31, and it divides plainly: the arguments are unused.
    assert [int(a) for a in args[4:6]] == [0, 0]
