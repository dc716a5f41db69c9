"""The kernel contract: the reference, Numba and CUDA kernel sets export the same ops with the same parameters.

Layers call ``kernels_for(x).<op>(...)`` without knowing which set answers, so an op missing from one set, or
a parameter renamed, reordered or given another default there, breaks only on that device. Annotations are
not compared: they name each set's array type (np.ndarray, cupy.ndarray).
"""

from __future__ import annotations

import importlib
import inspect

import pytest
from tinygan.kernels import reference as R

KERNEL_SETS = [
    pytest.param("tinygan.kernels.reference", id="reference"),
    pytest.param("tinygan.kernels.cpu", id="numba"),
    pytest.param("tinygan.kernels.gpu", id="gpu", marks=pytest.mark.gpu),
]


def _parameters(fn) -> list[tuple]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


def test_the_contract_lists_every_reference_op():
    public = {name for name, obj in vars(R).items() if inspect.isfunction(obj) and not name.startswith("_")}
    assert public == set(R.OPS)
    assert len(R.OPS) == len(set(R.OPS)) >= 20


@pytest.mark.parametrize("module", KERNEL_SETS)
def test_kernel_set_exports_every_op_with_the_reference_parameters(module):
    K = importlib.import_module(module)
    missing = [op for op in R.OPS if not callable(getattr(K, op, None))]
    assert not missing, f"{module} lacks {missing}"
    differ = {op: (_parameters(getattr(K, op)), _parameters(getattr(R, op))) for op in R.OPS}
    differ = {op: pair for op, pair in differ.items() if pair[0] != pair[1]}
    assert not differ, f"{module}: parameters differ from the reference's: {differ}"


def test_the_comparison_can_fail():
    def conv2d_forward(x, W, b, padding, stride):  # two parameters swapped
        pass

    assert _parameters(conv2d_forward) != _parameters(R.conv2d_forward)
