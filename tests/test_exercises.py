"""exercises/: every solution passes the walkthrough's checks, every untouched stub fails with a one-line
message, and a learner's broken or missing file gets a one-line error, never a traceback."""

import importlib.util
import inspect
import subprocess
import sys
from pathlib import Path

import pytest
import tinygan.kernels.reference as reference_kernels

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "backprop_walkthrough.py"
EXERCISES_DIR = ROOT / "exercises"


def _load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


WALKTHROUGH = _load(SCRIPT, "backprop_walkthrough_for_exercises")
NAMES = sorted(WALKTHROUGH.EXERCISES)


def run(capsys, *args):
    namespace = vars(reference_kernels).copy()
    code = WALKTHROUGH.main(list(args))
    assert vars(reference_kernels) == namespace, "the learner's kernels must be taken out again"
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_every_exercise_has_a_stub_a_solution_and_a_line_in_the_readme():
    readme = (EXERCISES_DIR / "README.md").read_text()
    for name in NAMES:
        assert (EXERCISES_DIR / f"{name}.py").is_file(), name
        assert (EXERCISES_DIR / "solutions" / f"{name}.py").is_file(), name
        assert f"| `{name}` |" in readme, name
    assert sorted(p.stem for p in EXERCISES_DIR.glob("*.py")) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_stubs_and_solutions_have_the_reference_signatures(name):
    stub = _load(EXERCISES_DIR / f"{name}.py", f"stub_{name}")
    solution = _load(EXERCISES_DIR / "solutions" / f"{name}.py", f"solution_{name}")
    for function in WALKTHROUGH.EXERCISES[name][0]:
        expected = list(inspect.signature(getattr(reference_kernels, function)).parameters)
        assert list(inspect.signature(getattr(stub, function)).parameters) == expected, function
        assert list(inspect.signature(getattr(solution, function)).parameters) == expected, function


@pytest.mark.parametrize("name", NAMES)
def test_the_solution_passes(capsys, name):
    code, out, err = run(capsys, "--exercise", f"{name}={EXERCISES_DIR / 'solutions' / f'{name}.py'}")
    assert code == 0, out + err
    assert "your kernels passed every check that uses them" in out
    # Every function of the exercise was exercised by at least one check.
    calls = out.rsplit("(calls: ", 1)[1].rstrip(")\n")
    assert all(int(part.rsplit(" ", 1)[1]) > 0 for part in calls.split(", ")), calls


@pytest.mark.parametrize("name", NAMES)
def test_the_untouched_stub_fails_with_one_clear_line(capsys, name):
    code, _, err = run(capsys, "--exercise", name)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    section = WALKTHROUGH.EXERCISES[name][1]
    assert lines[0].startswith(f"error: --exercise {name}: ")
    assert "is not written yet" in lines[0] and f"docs/backprop.md, section {section}" in lines[0]


def test_a_wrong_answer_fails_the_checks_that_use_it(capsys, tmp_path):
    wrong = tmp_path / "dropout.py"
    wrong.write_text("def dropout_backward(dy, mask, p):\n    return dy * mask  # forgot 1 / (1 - p)\n")
    code, out, _ = run(capsys, "--exercise", f"dropout={wrong}")
    assert code == 1
    assert any(line.startswith("  Dropout(p=0.4)") and line.endswith("FAIL") for line in out.splitlines())


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "does not exist"),
        ("def dropout_backward(dy, mask, p)\n    return dy\n", "does not load: SyntaxError"),
        ("import no_such_module_here\n", "does not load: ModuleNotFoundError"),
        ("def something_else():\n    pass\n", "defines no dropout_backward"),
        ("def dropout_backward(dy, mask, p):\n    return dy[:1] @ mask\n", "dropout_backward raised"),
    ],
)
def test_a_bad_file_gets_one_line(capsys, tmp_path, content, message):
    path = tmp_path / "mine.py"
    if content is not None:
        path.write_text(content)
    code, _, err = run(capsys, "--exercise", f"dropout={path}")
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and message in err, err


def test_command_line_errors():
    unknown = subprocess.run(
        [sys.executable, str(SCRIPT), "--exercise", "nope"], capture_output=True, text=True, timeout=60
    )
    assert unknown.returncode == 1 and "unknown exercise 'nope'" in unknown.stderr
    both = subprocess.run(
        [sys.executable, str(SCRIPT), "--exercise", "dropout", "--break", "tanh"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert both.returncode == 1 and "one at a time" in both.stderr
    stub = subprocess.run(
        [sys.executable, str(SCRIPT), "--exercise", "batchnorm"], capture_output=True, text=True, timeout=60
    )
    assert stub.returncode == 1 and "Traceback" not in stub.stderr
