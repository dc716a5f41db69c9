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
