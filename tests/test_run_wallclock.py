"""tools/run_wallclock.py at tiny settings on the CPU: a seed run timed end to end, its epoch-end work on the
training thread reported by part in the table and the JSON."""

import json
import os
import subprocess
import sys
from pathlib import Path

from formats import write_stroke_digits

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "run_wallclock.py"
PARTS = {"gradient norms", "diagnostics probe", "row, print, plots", "score", "sample grid", "checkpoint copies"}


def test_run_wallclock_reports_each_run_and_its_epoch_end_work_by_part(tmp_path):
    digits = write_stroke_digits(tmp_path / "mnist")
    argv = [sys.executable, str(TOOL), "--device", "cpu", "--only", "mnist", "--mnist-data", str(digits)]
    argv += ["--mnist", "--epochs 2 --limit 250", "--no-warmup", "--json", str(tmp_path / "t.json")]
    env = {**os.environ, "TINYGAN_DATA": str(tmp_path / "cache")}
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    (example,) = json.loads((tmp_path / "t.json").read_text())["results"]
    assert example["example"] == "mnist_dense" and example["argv"][:2] == ["--recipe", "original"]
    (run,) = example["runs"]
    assert run["epochs"] == 2 and run["steps_per_epoch"] == 2  # 250 images, batch 125
    parts = run["outputs_by_part_s"]
    assert set(parts) == PARTS and all(seconds >= 0 for seconds in parts.values())
    assert sum(parts.values()) <= run["outputs_s"] + 1e-6  # the parts are the training thread's outputs
    assert run["wall_s"] >= run["steps_s"] + run["outputs_s"] - 1e-6
    assert "training thread's outputs s (by part)" in result.stdout and "checkpoint copies" in result.stdout
