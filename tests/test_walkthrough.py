"""examples/backprop_walkthrough.py: it passes on the library as it is, and it notices a broken backward.

The broken kernels live in examples/broken_kernels.py (the walkthrough's --break modes); every mode must
make the walkthrough fail at the row its BREAKS entry names.
"""

import importlib.util
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tinygan.kernels.reference as reference_kernels

from tinygan.backend import get_cpu_kernels
from tinygan.layers.dense import Dense

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "backprop_walkthrough.py"


def _load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def walkthrough():
    return _load(SCRIPT, "backprop_walkthrough")


BREAKS = _load(ROOT / "examples" / "broken_kernels.py", "broken_kernels").BREAKS


def run(walkthrough, capsys, *args):
    before = get_cpu_kernels()
    namespace = vars(reference_kernels).copy()
    code = walkthrough.main(list(args))
    assert get_cpu_kernels() == before, "main() must put the process-wide kernel choice back"
    assert vars(reference_kernels) == namespace, "main() must put every replaced kernel back"
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def checked_rows(out):
    """The rows that carry a verdict: every gradient compared, plus the yes/no checks."""
    return [line for line in out.splitlines() if re.search(r"\d\.\de[+-]\d\d (ok|FAIL)", line) or "FAIL " in line]


def failing_rows(out):
    return [line for line in out.splitlines() if line.endswith("FAIL") or line.startswith("  FAIL ")]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_comparison_passes(walkthrough, capsys, seed):
    code, out, _ = run(walkthrough, capsys, "--seed", str(seed))
    assert code == 0, out
    assert "FAIL" not in out
    for section in (
        "== 1a. Dropout(p=0.4)",
        "== 1b. BatchNorm1d(3)",
        "== 1c. Conv2d",
        "== 1d. ConvTranspose2d",
        "== 2. Finite differences",
        "== 3a. Discriminator step",
        "== 3b. Generator step through the frozen D",
        "== 4. Minimax vs non-saturating",
        "why the loss takes logits",
        "Adam(D) step 1",
        "Adam(G) step 1",
        "ok   D's .grads are still the D step's",
        "ok   D's weights after the whole G step: max |change| = 0.0",
    ):
        assert section in out, section
    # Each layer of the tour and each gradient of both GAN steps appears, checked.
    for row in (
        "Dropout(p=0.4)    dx",
        "BatchNorm1d(3)    dx",
        "BatchNorm1d(3)    dgamma",
        "Conv2d(2, 2)      dW",
        "col2im            dx",
        "ConvT2d(2, 1)     dx",
        "adjoint           <,>",
        "D[2] Dense(4, 1)  dW",
        "D[1] LeakyReLU    dx",
        "G[1] BatchNorm1d  dx",
        "G[4] Tanh()       dx",
        "dfake per sample  dir",
    ):
        assert any(line.startswith("  " + row) and line.endswith("ok") for line in out.splitlines()), row
    # D's weight gradients in the G step are shown as skipped, never computed.
    assert out.count("param_grads=False") >= 4
    rows = checked_rows(out)
    assert len(rows) >= 50
    match = re.search(r"all (\d+) checks passed", out)
    assert match and int(match.group(1)) >= len(rows)
    # Readable at 100 columns.
    assert max(len(line) for line in out.splitlines()) <= 100


def test_minimax_and_bigger_batch(walkthrough, capsys):
    code, out, _ = run(walkthrough, capsys, "--g-loss", "minimax", "--batch-size", "7", "--seed", "5")
    assert code == 0, out
    assert "kind='minimax'" in out


def test_numba_kernels_pass_too(walkthrough, capsys):
    code, out, _ = run(walkthrough, capsys, "--kernels", "numba")
    assert code == 0, out
    assert "kernels numba" in out


@pytest.mark.parametrize("mode", sorted(BREAKS))
def test_every_break_mode_is_caught(walkthrough, capsys, mode):
    code, out, _ = run(walkthrough, capsys, "--break", mode)
    assert code == 1, out
    assert "FAILED:" in out and "first caught by:" in out
    caught_by = BREAKS[mode].caught_by
    assert any(line.startswith("  " + caught_by) for line in failing_rows(out)), (caught_by, failing_rows(out))
    assert BREAKS[mode].mistake in out


def test_break_reaches_the_numba_kernels_too(walkthrough, capsys):
    code, out, _ = run(walkthrough, capsys, "--break", "batchnorm", "--kernels", "numba")
    assert code == 1
    assert any(line.startswith("  BatchNorm1d(3)") for line in failing_rows(out))


@pytest.mark.parametrize("mode", sorted(BREAKS))
def test_broken_kernels_have_the_reference_signatures(mode):
    for name, broken in BREAKS[mode].kernels.items():
        expected = list(inspect.signature(getattr(reference_kernels, name)).parameters)
        assert list(inspect.signature(broken).parameters) == expected, name


def test_a_layer_that_ignores_param_grads_fails(walkthrough, capsys, monkeypatch):
    original = Dense.backward

    def always_accumulate(self, dy, param_grads=True, input_grad=True):
        return original(self, dy, param_grads=True, input_grad=input_grad)

    monkeypatch.setattr(Dense, "backward", always_accumulate)
    code, out, _ = run(walkthrough, capsys)
    assert code == 1
    assert "FAIL D's .grads are still the D step's" in out


def test_command_line(tmp_path):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--seed", "3"], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all 55 checks passed" in result.stdout
    help_text = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60)
    assert help_text.returncode == 0
    for option in ("--seed", "--break", "--exercise", "finite differences", "batchnorm"):
        assert option in help_text.stdout, option
    too_small = subprocess.run(
        [sys.executable, str(SCRIPT), "--batch-size", "2"], capture_output=True, text=True, timeout=60
    )
    assert too_small.returncode == 1 and "at least 3" in too_small.stderr
    unknown = subprocess.run(
        [sys.executable, str(SCRIPT), "--break", "nope"], capture_output=True, text=True, timeout=60
    )
    assert unknown.returncode == 1 and "invalid choice" in unknown.stderr
    broken = subprocess.run(
        [sys.executable, str(SCRIPT), "--break", "tanh"], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert broken.returncode == 1 and "first caught by: G[4] Tanh() dx" in broken.stdout


def test_the_cells_are_percent_format():
    text = SCRIPT.read_text()
    assert text.count("# %%\n") >= 8 and text.count("# %% [markdown]") >= 8


# -- tools/adam_saturation.py: the measurement the guide quotes --------------------------------------------


def test_adam_saturation_measurement(capsys):
    tool = _load(ROOT / "tools" / "adam_saturation.py", "adam_saturation")
    assert tool.main(["--steps", "40"]) == 0
    out = capsys.readouterr().out
    ratio = float(re.search(r"minimax ([\d,]+)x smaller", out).group(1).replace(",", ""))
    moved = dict(re.findall(r"(minimax|nonsaturating) +moved +([\d.]+) lr", out)[:2])
    assert ratio > 1e4  # D dominates: the minimax gradient is orders of magnitude smaller...
    assert float(moved["minimax"]) > 0.5 * float(moved["nonsaturating"]) > 0  # ...yet Adam moves G about as far


def test_guide_figures_are_drawn(tmp_path):
    tool = _load(ROOT / "tools" / "make_guide_figures.py", "make_guide_figures")
    assert tool.main(["--out", str(tmp_path)]) == 0
    for name in ("gan_step_graph.png", "g_loss_gradients.png", "mode_collapse_coverage.png"):
        assert (tmp_path / name).stat().st_size > 10_000, name
    # The coverage figure reads the training-run record; the guide quotes these numbers from it.
    runs = tool.recorded_coverage()
    assert [r[0] for r in runs["original"]] == list(range(20, 181, 20))
    assert runs["original"][0] == (20, 3, 0.1, 77.7) and runs["original"][-1] == (180, 5, 0.4, 49.4)
    assert runs["default"] == [(30, 10, 6.8, None)] and runs["collapsed"][0][:2] == (30, 1)


# -- docs/backprop.md: its runnable snippets run, its links resolve ----------------------------------------

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "backprop.md"


def guide_snippets():
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.S)
    # Excerpts of library code are quoted too; the self-contained examples are the ones that import.
    return [block for block in blocks if block.startswith("import ")]


@pytest.mark.parametrize("index", range(4))
def test_guide_snippets_run(index, capsys):
    snippets = guide_snippets()
    assert len(snippets) == 4
    exec(compile(snippets[index], f"{GUIDE.name} snippet {index}", "exec"), {})


def test_guide_links_resolve():
    text = GUIDE.read_text()
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    local = [t for t in targets if not t.startswith(("http://", "https://"))]
    assert len(local) > 20
    missing = [t for t in local if not (GUIDE.parent / t).exists()]
    assert not missing, missing
