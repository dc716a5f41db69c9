"""bench/ema_augment_overhead.py: the four variants build the steps they name, the report says what it
measured, and (GPU) the captured steps are validated and timed."""

from __future__ import annotations

import json

import pytest

from bench import ema_augment_overhead as overhead


def test_variants_build_the_steps_they_name():
    for name, variant in overhead.VARIANTS.items():
        built = overhead.build("mnist", name, "cpu")
        trainer = built.keep
        assert (trainer.ema is not None) == (variant["ema_decay"] > 0), name
        assert (trainer.augment is not None) == bool(variant["augment"]), name
        if trainer.augment is not None:
            assert trainer.augment.policy == "translation,cutout,color"
        assert trainer.config.batch_size == 125
        assert overhead.check("mnist", built, "cpu") is None  # nothing to validate on the CPU


def test_report_gives_medians_overheads_and_the_verdict():
    result = {
        "device": "gpu",
        "machine": {"gpu": "NVIDIA H200"},
        "rounds": 3,
        "models": {
            "dcgan": {
                "batch": 128,
                "how": "DeviceRunner.step (CUDA graph)",
                "median_ms": {"plain": 2.0, "ema": 2.1, "augment": 2.2, "both": 2.4},
                "overhead": {"ema": 0.05, "augment": 0.1, "both": 0.2},
                "within_target": False,
                "check_failed": {"ema": "the step was not captured"},
            }
        },
    }
    text = overhead.report(result)
    assert "on NVIDIA H200 (gpu), medians of 3 rounds" in text
    assert "plain 2.000 ms, ema 2.100 ms (+5.0%), augment 2.200 ms (+10.0%), both 2.400 ms (+20.0%)" in text
    assert "both vs plain: NOT within the 15% target" in text
    assert "ema: CHECK FAILED (timed anyway, do not trust its figure): the step was not captured" in text


def test_nonsense_options_are_refused(capsys):
    with pytest.raises(SystemExit):
        overhead.main(["--models", "resnet"])
    assert "--models: expected some of ['mnist', 'dcgan']" in capsys.readouterr().err


@pytest.mark.gpu
def test_gpu_steps_are_validated_and_timed(tmp_path):
    path = tmp_path / "overhead.json"
    assert overhead.main(["--rounds", "1", "--budget", "0.05", "--json", str(path)]) == 0
    result = json.loads(path.read_text())
    for model in ("mnist", "dcgan"):
        entry = result["models"][model]
        assert entry["check_failed"] == {}
        assert set(entry["median_ms"]) == set(overhead.VARIANTS) and all(v > 0 for v in entry["median_ms"].values())
        assert set(entry["overhead"]) == {"ema", "augment", "both"}
