"""examples/backprop_walkthrough.py: it passes on the library as it is, and it notices a broken backward."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tinygan.kernels.reference as reference_kernels

from tinygan.backend import get_cpu_kernels
from tinygan.layers.dense import Dense

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "backprop_walkthrough.py"


@pytest.fixture(scope="module")
def walkthrough():
    spec = importlib.util.spec_from_file_location("backprop_walkthrough", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(walkthrough, capsys, *args):
    before = get_cpu_kernels()
    code = walkthrough.main(list(args))
    assert get_cpu_kernels() == before, "main() must put the process-wide kernel choice back"
    return code, capsys.readouterr().out


def checked_rows(out):
    """The rows that carry a verdict: every gradient compared, plus the yes/no checks."""
    return [line for line in out.splitlines() if re.search(r"\d\.\de[+-]\d\d (ok|FAIL)", line) or "FAIL " in line]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_comparison_passes(walkthrough, capsys, seed):
    code, out = run(walkthrough, capsys, "--seed", str(seed))
    assert code == 0, out
    assert "FAIL" not in out
    for section in (
        "== 1. Discriminator step",
        "== 2. Generator step through the frozen D",
        "why the loss takes logits",
        "Adam(D) step 1",
        "Adam(G) step 1",
        "ok   D's .grads are still the D step's",
        "ok   D's weights after the whole G step: max |change| = 0.0",
    ):
        assert section in out, section
    # Each gradient of both steps appears, checked: D's three tensors in the D step, G's in the G step.
    for row in (
        "D[2] Dense(4, 1)     dW",
        "D[1] LeakyReLU       dx",
        "G[1] BatchNorm1d     dx",
        "G[4] Tanh()          dx",
    ):
        assert any(line.startswith("  " + row) and line.endswith("ok") for line in out.splitlines()), row
    # D's weight gradients in the G step are shown as skipped, never computed.
    assert out.count("not computed: param_grads=False") == 4
    rows = checked_rows(out)
    assert len(rows) >= 30
    match = re.search(r"all (\d+) checks passed", out)
    assert match and int(match.group(1)) >= len(rows)


def test_minimax_and_bigger_batch(walkthrough, capsys):
    code, out = run(walkthrough, capsys, "--g-loss", "minimax", "--batch-size", "7", "--seed", "5")
    assert code == 0, out
    assert "kind='minimax'" in out


def test_numba_kernels_pass_too(walkthrough, capsys):
    code, out = run(walkthrough, capsys, "--kernels", "numba")
    assert code == 0, out
    assert "kernels numba" in out


def _wrong_tanh(dy, y):
    return dy * (1 - y)  # forgot the square


def _wrong_leaky(dy, x, negative_slope):
    return np.where(x > 0, dy, dy * negative_slope * negative_slope)


def _naive_batchnorm(dy, xhat, inv_std, gamma):
    # The classic mistake: treat mean and var as constants, dropping their paths back to x.
    axes = (0, *range(2, dy.ndim))
    return gamma * inv_std * dy, (dy * xhat).sum(axis=axes), dy.sum(axis=axes)


def _mean_instead_of_sum(dy, x):
    return x.T @ dy, dy.mean(axis=0)


def _unscaled_bce(logits, targets):
    loss, dlogits = reference_kernels.bce.bce_with_logits(logits, targets)
    return loss, dlogits * logits.size  # forgot that the loss is a mean


def _wrong_sigmoid(dy, y):
    return dy * y


def _adam_without_bias_correction(param, grad, m, v, lr, beta1, beta2, eps, step):
    m *= beta1
    m += (1 - beta1) * grad
    v *= beta2
    v += (1 - beta2) * grad * grad
    param -= lr * m / (np.sqrt(v) + eps)


@pytest.mark.parametrize(
    "kernel, broken, failing_row",
    [
        ("tanh_backward", _wrong_tanh, "G[4] Tanh()          dx"),
        ("leaky_relu_backward", _wrong_leaky, "D[1] LeakyReLU       dx"),
        ("batchnorm_backward", _naive_batchnorm, "G[1] BatchNorm1d     dx"),
        ("dense_backward_weight", _mean_instead_of_sum, "D[0] Dense(3, 4)     db"),
        ("bce_with_logits", _unscaled_bce, "loss                 dlogits"),
        ("sigmoid_backward", _wrong_sigmoid, "D[3] Sigmoid()       dz"),
        ("adam_update", _adam_without_bias_correction, "D[0] Dense(3, 4)     W"),
    ],
)
def test_a_broken_kernel_fails_the_walkthrough(walkthrough, capsys, monkeypatch, kernel, broken, failing_row):
    # Layers look their kernels up on the namespace at every call, so patching the namespace reaches them.
    monkeypatch.setattr(reference_kernels, kernel, broken)
    code, out = run(walkthrough, capsys)
    assert code == 1, out
    assert "FAILED:" in out
    assert any(line.startswith("  " + failing_row) and line.endswith("FAIL") for line in out.splitlines()), out


def test_a_layer_that_ignores_param_grads_fails(walkthrough, capsys, monkeypatch):
    original = Dense.backward

    def always_accumulate(self, dy, param_grads=True, input_grad=True):
        return original(self, dy, param_grads=True, input_grad=input_grad)

    monkeypatch.setattr(Dense, "backward", always_accumulate)
    code, out = run(walkthrough, capsys)
    assert code == 1
    assert "FAIL D's .grads are still the D step's" in out


def test_command_line(tmp_path):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--seed", "3"], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all 34 checks passed" in result.stdout
    help_text = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60)
    assert help_text.returncode == 0
    assert "--seed" in help_text.stdout and "finite differences" in help_text.stdout
    too_small = subprocess.run(
        [sys.executable, str(SCRIPT), "--batch-size", "2"], capture_output=True, text=True, timeout=60
    )
    assert too_small.returncode == 2 and "at least 3" in too_small.stderr


# -- docs/backprop.md: its runnable snippets run, its links resolve ----------------------------------------

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "backprop.md"


def guide_snippets():
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.S)
    # Excerpts of library code are quoted too; the self-contained examples are the ones that import.
    return [block for block in blocks if block.startswith("import ")]


@pytest.mark.parametrize("index", range(3))
def test_guide_snippets_run(index, capsys):
    snippets = guide_snippets()
    assert len(snippets) == 3
    exec(compile(snippets[index], f"{GUIDE.name} snippet {index}", "exec"), {})


def test_guide_links_resolve():
    text = GUIDE.read_text()
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    local = [t for t in targets if not t.startswith(("http://", "https://"))]
    assert len(local) > 20
    missing = [t for t in local if not (GUIDE.parent / t).exists()]
    assert not missing, missing
