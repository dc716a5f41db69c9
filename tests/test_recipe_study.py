"""tools/recipe_study.py at tiny settings on the CPU: every candidate on two seeds, scored with the real
MNIST metric (a classifier trained on first use from the given IDX files), the table, the CSV and the grid;
a time budget that is spent stops the study cleanly with what it has."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from formats import write_stroke_digits

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "tools" / "recipe_study.py"


@pytest.fixture
def digits(tmp_path):
    """Four MNIST IDX files of 600 + 100 images, each class a stroke at its own place (easy to classify)."""
    return write_stroke_digits(tmp_path / "mnist")


def study(tmp_path, digits, *extra):
    env = {**os.environ, "TINYGAN_DATA": str(tmp_path / "cache")}
    argv = [sys.executable, str(STUDY), "--data-dir", str(digits), "--out", str(tmp_path / "out"), "--device", "cpu"]
    argv += ["--epochs", "1", "--limit", "500", "--score-samples", "100", *extra]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.slow
def test_recipe_study_runs_every_candidate_on_both_seeds_and_writes_its_table(tmp_path, digits):
    candidates = "default,no-ema,aug-translation-cutout,d-steps-2"
    result = study(tmp_path, digits, "--candidates", candidates, "--seeds", "0", "1")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["results.csv", "results.md", "samples.png"]
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [(r["candidate"], r["seed"], r["epoch"]) for r in rows] == [
        (c, s, "1") for c in candidates.split(",") for s in ("0", "1")
    ]
    fids = [float(r["fid"]) for r in rows]
    assert all(np.isfinite(fids)) and len(set(fids)) == len(fids)  # seeds and candidates train differently
    assert rows[2]["options"] == "--ema-decay 0" and rows[-1]["options"] == "--d-steps 2"
    table = (out / "results.md").read_text()
    assert "| candidate | epoch | FID s0 | FID s1 |" in table and "Real held-out MNIST images" in table
    for row in rows[::2]:
        assert f"| {row['candidate']} | 1 | {float(row['fid']):.3f} |" in table
    assert "beats default" in table and sum(line.startswith("| ") for line in table.splitlines()) == 5

    # The classifier is cached now; a budget spent before the first run still writes the (empty) table.
    again = study(tmp_path, digits, "--time-budget", "0.001", "--candidates", "default")
    assert again.returncode == 0, again.stderr
    assert "time budget" in again.stdout
    assert "not started" in (out / "results.md").read_text()
    assert list(csv.DictReader(open(out / "results.csv"))) == []


# -- CIFAR-10 ------------------------------------------------------------------------------------------------


@pytest.fixture
def cifar(tmp_path):
    from formats import write_cifar_folder

    write_cifar_folder(tmp_path / "cifar", per_batch=40, rng=np.random.default_rng(0))  # 20 images per class
    return tmp_path / "cifar"


def cifar_study(tmp_path, cifar, *extra):
    env = {**os.environ, "TINYGAN_DATA": str(tmp_path / "cache")}
    argv = [sys.executable, str(STUDY), "--model", "cifar", "--data-dir", str(cifar), "--out", str(tmp_path / "out")]
    argv += ["--device", "cpu", "--smoke", "--epochs", "1", "--batch-size", "4", "--score-samples", "8"]
    argv += ["--classes", "airplane,cat", "--grid-columns", "3", *extra]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)


CIFAR_LABELS = (
    "default", "no-ema", "original", "no-aug", "aug-tcc", "convT5", "convT4", "d-conv3", "combo",
)  # fmt: skip


@pytest.mark.slow
def test_cifar_study_smoke_every_candidate_seed_and_class(tmp_path, cifar):
    result = cifar_study(tmp_path, cifar, "--time-budget", "600")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["grids.tar", "overview.png", "results.csv", "results.md"]
    assert not (tmp_path / "cache").exists()  # the smoke classifier is not cached
    rows = list(csv.DictReader(open(out / "results.csv")))
    keys = [(r["candidate"], r["seed"], r["class"]) for r in rows]
    expected = {(c, s, k) for c in CIFAR_LABELS for s in "01" for k in ("airplane", "cat")}
    assert sorted(keys) == sorted(expected)
    assert all(r["epochs"] == "1" for r in rows)  # "original" too: the study's epochs, not its own 150
    fids = [float(r["fid"]) for r in rows]
    assert all(np.isfinite(fids)) and all(f > 0 for f in fids)
    assert len({r["fid"] for r in rows if r["candidate"] != "combo"}) == 32  # seeds, classes, candidates differ
    by = {(r["candidate"], r["seed"], r["class"]): r for r in rows}
    assert by[("convT5", "0", "cat")]["options"] == "--upsample convT5"
    assert by[("original", "1", "airplane")]["options"] == "--recipe original"
    # Which generator was scored: the EMA where the run keeps one; the original recipe has none.
    generators = {c: {r["generator"] for r in rows if r["candidate"] == c} for c in CIFAR_LABELS}
    assert generators == {c: {"raw" if c in ("no-ema", "original") else "ema"} for c in CIFAR_LABELS}
    assert all(0 <= float(r["recognized"]) <= 1 for r in rows)
    table = (out / "results.md").read_text()
    assert "**1 epochs** per class for every candidate ('original' included, not its own 150)" in table
    assert "| candidate | FID s0 | FID s1 | rec s0 | rec s1 |" in table
    assert "Default recipe (tinygan.recipes.CIFAR_RECIPES['default']): epochs 780," in table
    combo = by[("combo", "0", "cat")]["options"]
    assert f"- combo: `{combo}`" in table and combo.count("--") == 3  # one of each group
    assert "- no-ema: the raw generator (not its EMA) of the 'default' runs" in table
    assert "left to right: " + ", ".join(CIFAR_LABELS) in table
    for name in CIFAR_LABELS:  # one table row each, in the study's order; only the default has no verdict
        line = next(line for line in table.splitlines() if line.startswith(f"| {name} | "))
        assert line.split(" | ")[-2].strip() in (("",) if name == "default" else ("yes", "no"))
    import tarfile

    from PIL import Image

    with tarfile.open(out / "grids.tar") as tar:
        assert sorted(tar.getnames()) == sorted(f"grid-{c}.png" for c in CIFAR_LABELS)
    # overview: 2 class rows; 9 candidates x 3 samples and 8 separator columns = 35 columns of 32 pixels, each
    # with 2 of padding (tinygan.viz.grid), the whole scaled up by a whole factor.
    width, height = Image.open(out / "overview.png").size
    assert width * (2 * 34 + 2) == height * (35 * 34 + 2)


def _study_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("recipe_study_under_test", STUDY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cifar_candidates_differ_from_the_current_default_recipe():
    """A candidate with the default's settings would be scored as a rival of itself (the study's old "ema" and
    "aug-tc" became the default on 2026-12-02): every candidate must change what trains, and the default
    must keep an EMA for its raw twin "no-ema" to be another generator."""
    import dataclasses

    study = _study_module()
    example = study._example("cifar_dcgan")

    def settings(options):
        config = example.make_config(example.parse_args([*options, "--class", "cat", "--epochs", "7"]))
        return {k: v for k, v in dataclasses.asdict(config).items() if k != "recipe"}

    default = settings([])
    assert default["ema_decay"] > 0 and study.CIFAR_RAW_TWIN == {"default": "no-ema"}
    assert study.CIFAR_CANDIDATES["default"] == []
    for name, options in study.CIFAR_CANDIDATES.items():
        if name not in ("default", "combo"):
            assert settings(options) != default, f"{name} trains the default recipe"
    assert settings(["--recipe", "original"])["epochs"] == 7  # the study's epochs, not the recipe's
    for group in study.CIFAR_COMBO_GROUPS.values():  # combo can tell which option each pick sets
        assert len({study.CIFAR_CANDIDATES[name][0] for name in group}) == 1


def test_cifar_combination_takes_the_winner_of_each_group_or_says_why_not():
    study = _study_module()
    seeds, classes = [0, 1], ["cat"]

    def rows(fids):
        return [{"candidate": c, "seed": s, "class": "cat", "fid": f[s]} for c, f in fids.items() for s in seeds]

    base = {"default": (10, 10), "no-aug": (11, 9), "aug-tcc": (9, 9.5), "convT4": (8, 8), "convT5": (7, 12)}
    options, why = study.combination(rows(base), seeds, classes)
    assert options == ["--augment", "translation,cutout,color", "--upsample", "convT4"]
    assert "beat the default on every seed: aug-tcc and convT4" in why
    worse = {**base, "aug-tcc": (12, 9)}  # no augmentation change wins on both seeds: the better of each group
    options, why = study.combination(rows(worse), seeds, classes)
    assert options == ["--augment", "none", "--upsample", "convT4"] and "beat the default on every seed: convT4," in why
    options, why = study.combination(rows({"default": (1, 1), "convT5": (2, 2)}), seeds, classes)
    assert options is None and why.startswith("skipped")


def test_cifar_default_rows_come_from_its_own_runs_and_no_ema_from_their_raw_generator(tmp_path, cifar, monkeypatch):
    """In process, so that the scored samples can be traced to the trainer that made them."""
    from tinygan import metrics_cifar, train

    study = _study_module()
    trainers, scored = [], []

    class Recorded(train.GANTrainer):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            trainers.append(self)

    evaluate = metrics_cifar.evaluate

    def recorded_evaluate(samples, *a, **k):
        scored.append(np.array(samples))
        return evaluate(samples, *a, **k)

    monkeypatch.setattr(train, "GANTrainer", Recorded)
    monkeypatch.setattr(metrics_cifar, "evaluate", recorded_evaluate)
    monkeypatch.setenv("TINYGAN_DATA", str(tmp_path / "cache"))
    argv = ["--model", "cifar", "--data-dir", str(cifar), "--out", str(tmp_path / "out"), "--device", "cpu"]
    argv += ["--smoke", "--epochs", "2", "--batch-size", "4", "--score-samples", "8", "--classes", "cat"]
    argv += ["--candidates", "original", "--seeds", "1", "--no-fit-budget"]
    assert study.main(argv) == 0
    rows = list(csv.DictReader(open(tmp_path / "out" / "results.csv")))
    assert [r["candidate"] for r in rows] == ["default", "no-ema", "original"]  # "default" trains unasked
    warm_up, default, original = trainers  # the warm-up run, then one run each: no-ema trained no run of its own
    assert default.config.recipe == "default" and default.config.ema_decay == 0.999
    assert default.config.augment == "translation,cutout" and default.config.epochs == 2
    assert original.config.recipe == "original" and original.config.ema_decay == 0 and original.config.epochs == 2
    z = np.random.default_rng([1, 3]).standard_normal((8, 100))  # the study's scoring noise of seed 1
    np.testing.assert_array_equal(scored[-3], default.generate(z))  # the default's EMA generator
    np.testing.assert_array_equal(scored[-2], study._raw_images(default, z))  # its raw G, filed as no-ema
    assert not np.array_equal(scored[-3], scored[-2])
    np.testing.assert_array_equal(scored[-1], original.generate(z))
    # no-ema is the default run's raw generator, so it reports that run's time; the original's own run is
    # established by the trainers above (two runs of 0.4 s may well round to the same time).
    assert rows[0]["train_seconds"] == rows[1]["train_seconds"]
    assert [r["generator"] for r in rows] == ["ema", "raw", "raw"]


def test_cifar_study_stops_at_the_budget_and_says_what_it_skipped(tmp_path, cifar):
    result = cifar_study(tmp_path, cifar, "--candidates", "convT4,convT5", "--time-budget", "0.01")
    assert result.returncode == 0, result.stderr
    assert "time budget" in result.stdout
    table = (tmp_path / "out" / "results.md").read_text()
    assert "Note: time budget" in table and "runs" in table
    assert list(csv.DictReader(open(tmp_path / "out" / "results.csv"))) == []


def test_cifar_study_refuses_unknown_candidates_and_classes(tmp_path, cifar):
    bad = cifar_study(tmp_path, cifar, "--candidates", "ema")  # the default itself since 2026-12-02
    assert bad.returncode == 2 and "--candidates: unknown ['ema']" in bad.stderr
    bad = cifar_study(tmp_path, cifar, "--candidates", "convT4,no-ema")
    assert bad.returncode == 2 and "--candidates: ['no-ema'] come from the default's runs" in bad.stderr
    bad = cifar_study(tmp_path, cifar, "--classes", "cow")
    assert bad.returncode == 2 and "--classes: unknown ['cow']" in bad.stderr
