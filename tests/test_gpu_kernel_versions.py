"""The kernel versions of bench/dev (earlier versions of the GPU convolution helpers, kept to be timed
against production) compute what the reference computes, at odd sizes, in float32 and float64."""

from __future__ import annotations

import numpy as np
import pytest

# Odd sizes, stride larger than the kernel (taps that reach no pixel), padding as large as the kernel
# allows, a 1x1 image, and the DCGAN's 5x5 stride-2 geometry.
ODD_CONVS = [
    ((2, 3, 7, 5), 3, 1, 1),
    ((1, 2, 9, 8), 2, 3, 1),
    ((3, 1, 5, 5), 5, 1, 2),
    ((2, 4, 8, 8), 5, 2, 2),
    ((1, 1, 1, 1), 1, 1, 0),
    ((2, 3, 9, 7), 3, 2, 0),
]
ODD_SUMS = [("odd", (3, 5, 7, 3)), ("one pixel", (2, 7, 1, 1)), ("wide", (9, 2, 33, 31))]
# BatchNorm: one block's worth per channel, several chunks per channel (the last partial), (N, C).
ODD_BATCHNORMS = [("odd", (3, 5, 7, 3)), ("chunked", (3, 2, 47, 61)), ("dense", (9001, 3))]
# Adam: tensors under a chunk, one element, one past a chunk, several chunks with a ragged end.
ODD_ADAM = [("odd", [15, 1, 1025, 2100, 4096, 9])]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_version_matches_the_reference(dtype):
    from bench.dev import kernel_versions as kv

    convs = [kv.Conv(f"case {i}", shape, k, s, p) for i, (shape, k, s, p) in enumerate(ODD_CONVS)]
    rng = np.random.default_rng(7)
    checked = 0
    all_ops = kv.ops(dtype, convs=convs, bias_grads=ODD_SUMS, batchnorms=ODD_BATCHNORMS, adam_networks=ODD_ADAM)
    for op in all_ops:
        assert len(op.versions) >= 2, f"{op.name}: a version beside production"
        for label, make, reference, _ in op.cases:
            host = make(rng)
            want = reference(tuple(a.astype(np.float64) if isinstance(a, np.ndarray) else a for a in host))
            for version in op.versions:
                ok, error = kv.validate(version, host, want, 1e-6 if dtype == np.float32 else 1e-12)
                assert ok, f"{op.name} {version.name} on {label}: error {error:.2e}"
                checked += 1
    assert checked == sum(len(op.versions) * len(op.cases) for op in all_ops) > 0


@pytest.mark.gpu
def test_col2im_versions_give_the_same_bits():
    """Every col2im version visits the taps of a pixel in the same order, so they agree bit for bit:
    replacing one by another in production changes no training run."""
    import cupy as cp

    from bench.dev import kernel_versions as kv

    convs = [kv.Conv(f"case {i}", shape, k, s, p) for i, (shape, k, s, p) in enumerate(ODD_CONVS)]
    convs += kv.DCGAN_CONVS[-3:]  # the generator's 5x5 stride-2 geometry at full size
    convs += [kv.Conv("D conv2 at batch 4", (4, 64, 32, 32), 3, 2, 1), kv.Conv("4x4 stride 2", (3, 5, 9, 8), 4, 2, 1)]
    ops = [op for op in kv.ops(np.float32, convs=convs, bias_grads=[]) if op.name in ("col2im", "col2im_bf16")]
    assert len(ops) == 2
    rng = np.random.default_rng(11)
    for op in ops:
        for label, make, _, _ in op.cases:
            args = kv.to_device(make(rng))
            outputs = {v.name: cp.asnumpy(v.fn(*args)) for v in op.versions}
            first = outputs[op.versions[0].name]
            for name, out in outputs.items():
                assert np.array_equal(out, first), f"{op.name} {name} differs from {op.versions[0].name} on {label}"


@pytest.mark.parametrize("cfg, prec", [(0, 0), (1, 2), (2, 1)])
def test_implicit_gemm_index_math_replays_the_reference_conv(cfg, prec):
    """No GPU needed: bench/dev/igemm_emulate replays conv_igemm.cu's loads, swizzled tiles, mma.sync
    fragments and epilogue in NumPy for one tile configuration and product (SIMT, TF32, BF16 layouts), on
    a ragged stride-2 case; the forward, data, weight and bias gradients must equal the reference's."""
    from bench.dev import igemm_emulate as E

    E.use_cfg(cfg)
    try:
        errs = E.conv_case(2, 3, 9, 7, 70, (3, 3), (2, 2), (1, 1), prec, np.random.default_rng(3))
    finally:
        E.use_cfg(0)
    assert all(e < 1e-9 for e in errs.values()), errs


@pytest.mark.gpu
def test_every_implicit_gemm_version_matches_the_reference():
    """bench/dev/igemm_versions' versions (im2col + cuBLAS at each precision, the implicit-GEMM kernels of
    every tile configuration and product, PyTorch) on its odd shapes against tinygan's float64 reference,
    each within its precision's tolerance."""
    pytest.importorskip("torch")
    from bench.dev import igemm_versions as iv

    rows = []
    with open("/dev/null", "w") as log:
        for layer in iv.ODD:
            rows += iv.run_layer(layer, np.random.default_rng(5), 1, 1, False, log)
    assert len(rows) == len(iv.ODD) * len(iv.PASSES) * len(iv.VERSIONS)
    bad = [f"{r.layer} {r.pas} {r.version}: {r.error:.1e} {r.note}" for r in rows if not r.ok]
    assert not bad, bad
