import os
from pathlib import Path

import numpy as np
import pytest

from tinygan.backend import gpu_unavailable_reason

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def shared_data():
    """The genuine data beside the checkout (read-only), or a skip saying why not."""
    path = Path(os.environ.get("TINYGAN_SHARED_DATA", SHARED_DATA))
    if not path.is_dir():
        pytest.skip(f"genuine data folder {path} not present")
    return path


def pytest_collection_modifyitems(config, items):
    reason = None
    for item in items:
        if "gpu" in item.keywords:
            reason = reason or gpu_unavailable_reason() or ""
            if reason:
                item.add_marker(pytest.mark.skip(reason=f"GPU test: {reason}"))
