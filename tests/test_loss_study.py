"""tools/loss_study.py: the figure and table drawn from recorded rows (``--replot``, the path that makes
docs/figures/minimax_vs_nonsaturating.png), and a tiny study on the CPU (both losses, two seeds, scored with
the real MNIST metric on synthetic IDX files) that writes every file the GPU run will."""

import csv
import importlib.util
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from formats import write_stroke_digits
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "tools" / "loss_study.py"
FILES = ["grids.npz", "minimax_vs_nonsaturating.png", "results.csv", "results.md", "runs.tar"]


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("loss_study", STUDY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def recorded(tool, folder, recipes=("default",), epochs=6):
    """results.csv and grids.npz as a study writes them, with made-up figures."""
    rng = np.random.default_rng(0)
    rows, grids = [], {}
    for recipe in recipes:
        for seed in (0, 1):
            for loss in tool.LOSSES:
                for epoch in range(1, epochs + 1):
                    row = {"recipe": recipe, "loss": loss, "seed": seed, "epoch": epoch, "d_real": 0.8, "d_fake": 0.3}
                    row.update({"g_input_grad": 1.0 / epoch, "g_input_grad_probe": 0.5 / epoch, "dead.G": 0.0})
                    row["g_weight_share"] = 0.9 if loss == "nonsaturating" else 0.6
                    row.update({"update.G.dense1": 0.01, "update.G.dense2": 0.03, "update.D.dense1": 0.02})
                    if epoch % 2 == 0:
                        row.update({"fid": 100.0 / epoch, "classes_covered": 10, "rarest_class_fraction": 0.07})
                        row.update({"classifier_score": 8.0})
                    rows.append(row)
                    if epoch % 2 == 1:
                        grids[f"{recipe}/{loss}/s{seed}/e{epoch}"] = rng.integers(0, 256, (242, 242), dtype=np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    tool.write_csv(folder / "results.csv", rows)
    np.savez_compressed(folder / "grids.npz", **grids)
    return rows, grids


def test_replot_draws_the_guides_figure_from_the_recorded_files(tool, tmp_path):
    rows, _ = recorded(tool, tmp_path / "study")
    assert tool.main(["--replot", str(tmp_path / "study"), "--out", str(tmp_path / "figures")]) == 0
    figures = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert figures == ["minimax_vs_nonsaturating.png"]  # no original-recipe rows: no second figure
    with Image.open(tmp_path / "figures" / figures[0]) as image:
        pixels = np.asarray(image.convert("L"))
    assert pixels.shape[0] > 900 and pixels.shape[1] > 1200 and pixels.std() > 10

    again = tool.read_csv(tmp_path / "study" / "results.csv")
    assert [(r["loss"], r["seed"], r["epoch"]) for r in again] == [(r["loss"], r["seed"], r["epoch"]) for r in rows]
    assert again[1]["fid"] == 50.0 and "fid" not in again[0]  # an empty cell reads back as absent


def test_the_figures_grids_span_the_run_and_the_table_picks_its_epochs(tool, tmp_path):
    _, grids = recorded(tool, tmp_path / "study", recipes=("default", "original"), epochs=30)
    assert tool._grid_epochs(grids, "default") == [1, 3, 9, 19, 29]  # odd epochs only: the nearest (1, 3, 10, 20, 29)
    assert tool._grid_epochs({f"default/minimax/s0/e{e}": None for e in range(1, 31)}, "default") == [1, 3, 10, 20, 30]
    assert [e for e in range(1, 31) if tool.keep_grid(e, 30)] == [1, 2, 3, 5, 10, 15, 20, 25, 30]
    written = tool.make_figures(tool.read_csv(tmp_path / "study" / "results.csv"), grids, tmp_path)
    assert [p.name for p in written] == ["minimax_vs_nonsaturating.png", "minimax_vs_nonsaturating_original.png"]
    args = tool.parse_args(["--data-dir", "DATA", "--out", str(tmp_path), "--epochs", "30", "--device", "cpu"])
    table = tool.results_table(tool.read_csv(tmp_path / "study" / "results.csv"), args, None, ["a note"])
    run_rows = [line for line in table.splitlines() if line.startswith("| default | minimax | 1 |")]
    assert [line.split(" | ")[3] for line in run_rows] == ["1", "2", "10", "20", "30"]
    assert "| 0.600 | 2.00e-02 | 2.00e-02 |" in run_rows[0]  # the share, G's layers' mean update, then D's
    assert "Note: a note" in table and "--data-dir DATA" in table


def test_options_that_make_no_sense_are_one_line_errors(tmp_path):
    cases = [
        (["--out", str(tmp_path)], "--data-dir: required to train"),
        (["--data-dir", "x", "--out", str(tmp_path), "--recipes", "fancy"], "--recipes: unknown ['fancy']"),
        (["--data-dir", "x", "--out", str(tmp_path), "--time-budget", "0"], "--time-budget: expected a positive"),
        (["--data-dir", "x", "--out", str(tmp_path), "--epochs", "0"], "--epochs: expected a positive integer"),
        (["--replot", str(tmp_path / "none"), "--out", str(tmp_path)], "results.csv not found"),
    ]
    for argv, message in cases:
        result = subprocess.run([sys.executable, str(STUDY), *argv], capture_output=True, text=True, timeout=120)
        assert result.returncode == 2 and message in result.stderr, (argv, result.stderr)
        assert "Traceback" not in result.stderr


@pytest.fixture
def digits(tmp_path):
    """Four MNIST IDX files of 600 + 100 images, each class a stroke at its own place (easy to classify)."""
    return write_stroke_digits(tmp_path / "mnist")


def study(tmp_path, digits, *extra):
    env = {**os.environ, "TINYGAN_DATA": str(tmp_path / "cache")}
    argv = [sys.executable, str(STUDY), "--data-dir", str(digits), "--out", str(tmp_path / "out"), "--device", "cpu"]
    argv += ["--epochs", "2", "--limit", "250", "--score-samples", "100", "--score-every", "1", *extra]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=900)


@pytest.mark.slow
def test_a_tiny_study_on_the_cpu_writes_every_file_of_the_gpu_run(tmp_path, digits):
    result = study(tmp_path, digits, "--recipes", "default", "--seeds", "0", "1", "--sample-every", "1")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == FILES
    rows = list(csv.DictReader(open(out / "results.csv")))
    runs = [(loss, seed) for seed in ("0", "1") for loss in ("nonsaturating", "minimax")]
    assert [(r["loss"], r["seed"], r["epoch"]) for r in rows] == [(*run, e) for run in runs for e in ("1", "2")]
    for key in ("d_real", "d_fake", "g_input_grad", "g_input_grad_probe", "g_weight_share", "update.G.dense1"):
        assert all(np.isfinite(float(r[key])) for r in rows), key
    for key in ("dead.G", "dead.D", "classes_covered", "rarest_class_fraction", "classifier_score", "fid"):
        assert all(np.isfinite(float(r[key])) for r in rows), key
    # The two losses train differently from their first G step on: what G receives differs at once.
    assert rows[0]["g_input_grad"] != rows[2]["g_input_grad"]
    with np.load(out / "grids.npz") as grids:
        expected = {f"default/{loss}/s{seed}/e{e}" for loss, seed in runs for e in (1, 2)}
        assert set(grids.files) == expected
        assert grids["default/minimax/s1/e2"].dtype == np.uint8
    with tarfile.open(out / "runs.tar") as tar:
        names = set(tar.getnames())
    assert "default-minimax-seed1/metrics.csv" in names and "default-minimax-seed1/epochs.log" in names
    table = (out / "results.md").read_text()
    assert "| default | minimax | 1 | 2 |" in table and "Real held-out MNIST images" in table

    # The classifier is cached now; a budget spent before the first run still writes the (empty) table.
    again = study(tmp_path, digits, "--time-budget", "0.001", "--recipes", "original", "--seeds", "0")
    assert again.returncode == 0, again.stderr
    assert "time budget" in again.stdout and "not started" in (out / "results.md").read_text()
    assert list(csv.DictReader(open(out / "results.csv"))) == []
