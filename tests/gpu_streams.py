"""A non-blocking stream that sees what the test uploaded before it.

``cp.asarray(host_array)`` copies on the legacy default stream, and from pageable host memory the call
returns once the bytes are staged, before the device has them. A stream made with
``non_blocking=True`` (what CUDA-graph capture needs) does not wait for the legacy stream, so kernels
queued on it at once can read the input half-written. Alone on a GPU the copy almost always wins that
race; beside other processes it lost once (issue 13, part 7: every output of a capture test wrong).
"""

from __future__ import annotations

import cupy as cp


def capture_stream() -> cp.cuda.Stream:
    """A new non-blocking stream, ordered after everything already queued on the device."""
    cp.cuda.Device().synchronize()
    return cp.cuda.Stream(non_blocking=True)
