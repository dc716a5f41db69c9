"""Every kernel of both seed models at its real shape, forward and backward separately, in every
implementation: validated against the float64 reference, then timed (cases in bench/cases.py)."""

from __future__ import annotations

import functools

import pytest

from bench import cases, harness

IMPLS = {"cpu": cases.IMPLS_CPU, "gpu": cases.IMPLS_GPU}
PARAMS = [
    pytest.param(device, impl, case, id=f"{device}-{impl}-{case.id}")
    for device in ("cpu", "gpu")
    for case in cases.cases_for(device)
    for impl in IMPLS[device]
]


@functools.cache
def expected(case_id: str) -> tuple:
    return cases.expected_outputs(next(c for c in cases.all_cases() if c.id == case_id))


@pytest.mark.parametrize("device,impl,case", PARAMS)
def test_kernel(benchmark, selected, device, impl, case):
    selected(device, impl)
    if impl == "torch":
        from bench.steps import configure_torch

        configure_torch(device)
    try:
        runner = cases.setup_runner(case, impl, device)
    except NotImplementedError as exc:
        pytest.skip(str(exc))
    ok, err, text = cases.validate(case, runner, expected(case.id))
    benchmark.extra_info.update(case=case.id, layer=case.layer, pass_=case.pass_, max_error=err)
    if not ok:
        pytest.fail(f"{impl} {case.id} does not match the reference, not timed: {text}")
    benchmark.extra_info.update(flops=case.flops, bytes=case.bytes)
    if device == "gpu":
        # The figure to read for the GPU is the CUDA-event median; the table's host times include one
        # synchronization per call.
        timer = harness.timer_for(impl, device)
        stats = harness.measure(runner.fn, timer, budget_s=0.2)
        benchmark.extra_info.update(cuda_event_median_us=stats.median * 1e6, cuda_event_iqr_us=stats.iqr * 1e6)

        def synced():
            runner.fn()
            timer.sync()

        benchmark.pedantic(synced, rounds=50, warmup_rounds=5)
    else:
        benchmark(runner.fn)
