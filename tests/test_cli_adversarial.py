"""The command lines as a careless user meets them: every mistake is one ``error`` line with tinygan.cli's
exit code (1 bad option; argparse's own 2 would read as "no GPU"), never a traceback."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def walkthrough():
    path = ROOT / "examples" / "backprop_walkthrough.py"
    spec = importlib.util.spec_from_file_location("backprop_walkthrough", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--seed", "-1"], "argument --seed: expected a non-negative integer, received '-1'"),  # was a traceback
        (["--batch-size", "1001"], "--batch-size must be at most 1000 (finite differences perturb every input)"),
        (["--batch-size", "2"], "--batch-size must be at least 3"),
        (["--break", "nope"], "argument --break: invalid choice: 'nope'"),
        (["--exercise", "nope"], "argument --exercise: unknown exercise 'nope'"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_walkthrough_options_are_one_line(walkthrough, capsys, argv, message):
    with pytest.raises(SystemExit) as info:
        walkthrough.main(argv)
    out, err = capsys.readouterr()
    assert info.value.code == 1 and out == "", out
    assert err.count("\n") == 1 and ": error: " in err and message in err, err


def _module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_recipe_study_without_its_data_is_one_line_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    study = _module(ROOT / "tools" / "recipe_study.py", "recipe_study")
    made = []
    real_mkdtemp = study.tempfile.mkdtemp
    monkeypatch.setattr(study.tempfile, "mkdtemp", lambda **kw: made.append(real_mkdtemp(**kw)) or made[-1])
    out = tmp_path / "study"
    code = study.main(["--data-dir", str(tmp_path / "nothing"), "--out", str(out), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and err.startswith("error: MNIST: data dir ") and "nothing" in err, err
    assert not out.exists() and made == [], "no --out folder and no scratch folder for a study that cannot start"


def test_a_warning_during_a_command_is_one_line_and_the_display_is_restored(capsys):
    """A modified data file's md5 warning reached the user as Python's 'file:line: Category' plus the echo of
    the source line that raised it; while a command runs it is one 'warning:' line."""
    import warnings

    from tinygan.cli import one_line_warnings
    from tinygan.data.mnist import DataIntegrityWarning

    before = warnings.showwarning
    with one_line_warnings():
        warnings.warn("MNIST: md5 differs from the published one", DataIntegrityWarning, stacklevel=1)
    err = capsys.readouterr().err
    assert err == "warning: MNIST: md5 differs from the published one\n"
    assert warnings.showwarning is before
