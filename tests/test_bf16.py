"""kernels/bf16.py: the host's bfloat16 rounding, which must match _common.cu's to_bf16 bit for bit (the GPU
emulator and the kernel harness's references rely on it)."""

from __future__ import annotations

import numpy as np
from tinygan.kernels.bf16 import from_bf16, to_bf16


def test_rounds_to_nearest_ties_to_even():
    one = np.float32(1.0)
    ulp = np.float32(2.0**-7)  # bfloat16's spacing at 1
    values = np.array([one, one + ulp / 2, one + 3 * ulp / 2, one + ulp * 0.51, -(one + ulp / 2)], np.float32)
    # 1 + ulp/2 is a tie: to the even 1.0; 1 + 3 ulp/2 is a tie: to the even 1 + 2 ulp; above a half: up.
    assert to_bf16(values).tolist() == [0x3F80, 0x3F80, 0x3F82, 0x3F81, 0xBF80]


def test_nan_stays_a_quiet_nan_and_infinities_stay():
    bits = to_bf16(np.array([np.nan, np.inf, -np.inf], np.float32))
    assert bits[0] & 0x7F80 == 0x7F80 and bits[0] & 0x40 and bits[1] == 0x7F80 and bits[2] == 0xFF80
    assert np.isnan(from_bf16(bits[:1])).all()


def test_round_trip_within_half_an_ulp():
    rng = np.random.default_rng(3)
    x = rng.standard_normal(10_000).astype(np.float32)
    back = from_bf16(to_bf16(x))
    assert back.dtype == np.float32
    assert np.all(np.abs(back - x) <= np.abs(x) * 2.0**-8)
    np.testing.assert_array_equal(to_bf16(back), to_bf16(x))  # bfloat16 values round to themselves
