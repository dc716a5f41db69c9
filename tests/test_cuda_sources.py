"""Static checks of the CUDA sources that run without a GPU or a compiler (CI has neither): every .cu file of
kernels/gpu and bench/dev balances its braces, parentheses and brackets, never closing one it did not open.

A stray brace makes NVRTC refuse the whole module on the GPU machine, and every test that touches it fails
there (the eighth session lost a device call to one in layout.cu). ``python tools/nvcc_check.py`` compiles
every module where nvcc is installed; this catches the commonest slip everywhere.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted((ROOT / "kernels" / "gpu").glob("*.cu")) + sorted((ROOT / "bench" / "dev").glob("*.cu"))
PAIRS = {"}": "{", ")": "(", "]": "["}


def code_of(text: str) -> str:
    """The source without comments, string and character literals (which may hold any bracket)."""
    pattern = r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\''
    return re.sub(pattern, lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)


def first_imbalance(text: str) -> str | None:
    """None when every bracket closes one of its kind that is open; else where it goes wrong."""
    stack: list[tuple[str, int]] = []
    for line_no, line in enumerate(code_of(text).splitlines(), 1):
        for ch in line:
            if ch in "{([":
                stack.append((ch, line_no))
            elif ch in PAIRS:
                if not stack or stack[-1][0] != PAIRS[ch]:
                    return f"line {line_no}: {ch!r} closes nothing open of its kind"
                stack.pop()
    if stack:
        return f"line {stack[-1][1]}: {stack[-1][0]!r} is never closed"
    return None


def test_the_sources_are_there():
    assert any(p.name == "layout.cu" for p in SOURCES) and any(p.name == "_common.cu" for p in SOURCES)


@pytest.mark.parametrize("path", SOURCES, ids=[p.relative_to(ROOT).as_posix() for p in SOURCES])
def test_brackets_balance(path):
    assert first_imbalance(path.read_text()) is None, f"{path.name}: {first_imbalance(path.read_text())}"


def test_the_check_finds_a_stray_brace():
    good = "template <typename T>\n__global__ void k(T* x) {\n    if (x) { x[0] = T(0); }  // } in a comment\n}\n"
    assert first_imbalance(good) is None
    assert first_imbalance(good + "}\n") == "line 5: '}' closes nothing open of its kind"
    assert first_imbalance(good.replace("T(0); }", "T(0);")) == "line 2: '{' is never closed"
    assert first_imbalance('const char* s = "{";\n') is None
