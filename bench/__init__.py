"""tinygan's benchmarks: every kernel and a whole training step of both GANs, each implementation
validated against the NumPy reference before it is timed.

    python -m bench.report --device cpu            # the report: bench/results/<machine>-<date>.md + PNGs
    python -m pytest bench/ --benchmark-only       # the same cases as pytest-benchmark suites

Nothing here is part of the test suite (setup.cfg's testpaths is tests/). PyTorch is an optional
comparison: it is used where installed and never required.
"""
