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
from formats import write_idx

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "tools" / "recipe_study.py"


@pytest.fixture
def digits(tmp_path):
    """Four MNIST IDX files of 600 + 100 images, each class a stroke at its own place (easy to classify)."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "mnist"
    folder.mkdir()
    for prefix, n in (("train", 600), ("t10k", 100)):
        labels = rng.integers(0, 10, n)
        images = np.zeros((n, 28, 28), np.uint8)
        for i, label in enumerate(labels):
            images[i, 4 + label : 14 + label, 6 + label : 10 + label] = rng.integers(150, 256, size=(10, 4))
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return folder


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


def test_cifar_study_smoke_every_candidate_seed_and_class(tmp_path, cifar):
    result = cifar_study(tmp_path, cifar, "--candidates", "ema,resize,combo", "--time-budget", "300")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["grids.tar", "overview.png", "results.csv", "results.md"]
    assert not (tmp_path / "cache").exists()  # the smoke classifier is not cached
    rows = list(csv.DictReader(open(out / "results.csv")))
    keys = [(r["candidate"], r["seed"], r["class"]) for r in rows]
    expected = {(c, s, k) for c in ("default", "ema", "resize", "combo") for s in "01" for k in ("airplane", "cat")}
    assert sorted(keys) == sorted(expected)
    assert all(r["epochs"] == "1" for r in rows)
    fids = [float(r["fid"]) for r in rows]
    assert all(np.isfinite(fids)) and all(f > 0 for f in fids)
    assert len({r["fid"] for r in rows if r["candidate"] != "combo"}) == 12  # seeds, classes, candidates differ
    by = {(r["candidate"], r["seed"], r["class"]): r for r in rows}
    assert by[("resize", "0", "cat")]["options"] == "--upsample resize"
    # The EMA runs score the raw generator as 'default': the same run, so the same seconds.
    assert by[("default", "1", "cat")]["train_seconds"] == by[("ema", "1", "cat")]["train_seconds"]
    assert all(0 <= float(r["recognized"]) <= 1 for r in rows)
    table = (out / "results.md").read_text()
    assert "**1 epochs** per class" in table and "| candidate | FID s0 | FID s1 | rec s0 | rec s1 |" in table
    assert "- combo: `--ema-decay 0.999" in table and "left to right: default, ema, resize, combo" in table
    import tarfile

    from PIL import Image

    with tarfile.open(out / "grids.tar") as tar:
        assert sorted(tar.getnames()) == ["grid-combo.png", "grid-default.png", "grid-ema.png", "grid-resize.png"]
    # overview: 2 class rows; 4 candidates x 3 samples and 3 separator columns = 15 columns.
    width, height = Image.open(out / "overview.png").size
    assert abs(width / height - 15 / 2) < 0.3


def test_cifar_study_stops_at_the_budget_and_says_what_it_skipped(tmp_path, cifar):
    result = cifar_study(tmp_path, cifar, "--candidates", "convT4,resize", "--time-budget", "0.01")
    assert result.returncode == 0, result.stderr
    assert "time budget" in result.stdout
    table = (tmp_path / "out" / "results.md").read_text()
    assert "Note: time budget" in table and "runs" in table
    assert list(csv.DictReader(open(tmp_path / "out" / "results.csv"))) == []


def test_cifar_study_refuses_unknown_candidates_and_classes(tmp_path, cifar):
    bad = cifar_study(tmp_path, cifar, "--candidates", "no-ema")
    assert bad.returncode == 2 and "--candidates: unknown ['no-ema']" in bad.stderr
    bad = cifar_study(tmp_path, cifar, "--classes", "cow")
    assert bad.returncode == 2 and "--classes: unknown ['cow']" in bad.stderr
