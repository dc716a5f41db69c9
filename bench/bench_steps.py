"""A whole training step of each GAN (one GANStep call on a fixed real batch) in every implementation,
and the same step in PyTorch (eager; on the GPU also one CUDA graph per step). Each is validated by its
weight gradients against the float64 reference before it is timed (bench/steps.py)."""

from __future__ import annotations

import functools

import pytest

from bench import harness, steps
from bench.worker import _validate_step, step_factories

VARIANTS = {
    "cpu": [("reference", "eager"), ("numba", "eager"), ("torch", "eager")],
    "gpu": [("gpu", "eager"), ("gpu", "graph"), ("torch", "eager"), ("torch", "graph")],
}
PARAMS = [
    pytest.param(device, model, impl, variant, id=f"{device}-{model}-{impl}-{variant}")
    for device in ("cpu", "gpu")
    for model in steps.MODELS
    for impl, variant in VARIANTS[device]
]


@functools.cache
def reference_gradients(model: str) -> list:
    return steps.reference_gradients(model, steps.BATCH[model])


@pytest.mark.parametrize("device,model,impl,variant", PARAMS)
def test_step(benchmark, selected, device, model, impl, variant):
    selected(device, impl)
    n = steps.BATCH[model]
    factory = step_factories(impl, device)[variant]
    try:
        built = factory(model, n)
    except NotImplementedError as exc:
        pytest.skip(str(exc))
    want = reference_gradients(model) if variant == "eager" else None
    ok, err, text = _validate_step(impl, variant, device, model, n, want, built)
    benchmark.extra_info.update(model=model, batch=n, max_error=err, check=text)
    if not ok:
        pytest.fail(f"{impl} {variant} {model} step is wrong, not timed: {text}")
    fn = built.fn
    rounds = 20 if model == "mnist" or device == "gpu" else 5
    if device == "gpu":
        timer = harness.timer_for(impl, device)
        stats = harness.measure(fn, timer, budget_s=0.3, stream=built.stream)
        benchmark.extra_info.update(cuda_event_median_ms=stats.median * 1e3, cuda_event_iqr_ms=stats.iqr * 1e3)

        def synced():
            fn()
            timer.sync(built.stream)

        benchmark.pedantic(synced, rounds=rounds, warmup_rounds=2)
    else:
        benchmark.pedantic(fn, rounds=rounds, warmup_rounds=2)
