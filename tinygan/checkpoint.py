"""Checkpoints: plain arrays plus JSON metadata in one ``.npz``, written atomically.

A checkpoint loads with ``numpy.load(..., allow_pickle=False)``: opening one that someone sent you
never runs code. Writes go to a temporary file in the same folder, are flushed to disk, and then
renamed over the old file, so a crash or Ctrl-C mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "tinygan-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or does not match the model it is loaded into."""


def save_checkpoint(path: str | os.PathLike, arrays: dict[str, Any], meta: dict[str, Any]) -> Path:
    """Write ``arrays`` (host arrays) and ``meta`` (JSON-serializable) to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "version": VERSION, **meta}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, __meta__=np.array(json.dumps(meta)), **{k: np.asarray(v) for k, v in arrays.items()})
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    # The rename is only durable once the directory entry is on disk; not every OS lets us open a folder.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a checkpoint: ``(arrays, meta)``. Raises CheckpointError naming the file on any problem."""
    return _read(path, meta_only=False)


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """Only a checkpoint's metadata (its configuration, epoch, ...), without reading its arrays."""
    return _read(path, meta_only=True)[1]


def _read(path: str | os.PathLike, meta_only: bool) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.npz"
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = [key for key in archive.files if key == "__meta__" or not meta_only]
            arrays = {key: archive[key] for key in names}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
        raise CheckpointError(f"{path}: not a readable tinygan checkpoint (expected a .npz archive): {exc}") from None
    if "__meta__" not in arrays:
        raise CheckpointError(f"{path}: not a tinygan checkpoint (no metadata record)")
    try:
        meta = json.loads(str(arrays.pop("__meta__")))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: corrupt checkpoint metadata: {exc}") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: expected format {FORMAT!r}, received {meta.get('format')!r}")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{path}: expected checkpoint version {VERSION}, received {meta.get('version')!r}")
    return arrays, meta


def subtree(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The arrays stored under ``prefix/``, with the prefix removed."""
    start = prefix + "/"
    return {key[len(start) :]: value for key, value in arrays.items() if key.startswith(start)}


def with_prefix(arrays: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {f"{prefix}/{key}": value for key, value in arrays.items()}


def rng_state(generator: Any) -> dict[str, Any]:
    """JSON-serializable state of a numpy Generator or of a device generator with ``state_dict()``."""
    if isinstance(generator, np.random.Generator):
        return {"kind": "numpy", "state": generator.bit_generator.state}
    return {"kind": "device", "state": generator.state_dict()}


def set_rng_state(generator: Any, state: dict[str, Any]) -> None:
    if isinstance(generator, np.random.Generator):
        if state.get("kind") != "numpy":
            raise CheckpointError(f"expected a numpy generator state, received {state.get('kind')!r}")
        generator.bit_generator.state = state["state"]
    else:
        if state.get("kind") != "device":
            raise CheckpointError(f"expected a device generator state, received {state.get('kind')!r}")
        generator.load_state_dict(state["state"])
