"""Checkpoints: plain arrays plus JSON metadata in one ``.npz``, written atomically, read with checks.

A checkpoint loads with ``numpy.load``'s rules (``allow_pickle=False``): opening one that someone sent
you never runs code. Writes go to a temporary file in the same folder (``.NAME.tmp-PID``), are flushed
to disk, and then renamed over the old file, so a crash or Ctrl-C mid-write leaves the previous
checkpoint intact. A write refuses arrays with NaN or infinite values: a checkpoint is always one
that training could continue from.

Reading validates before it trusts, and reads as little as it can:

1. the zip directory: every member is ``KEY.npy``, and, where the caller says which keys it expects,
   no key is missing or unexpected (nothing has been decompressed yet);
2. the metadata record ``__meta__``: a JSON object of bounded size, of this format and version;
3. each array's ``.npy`` header (a few hundred bytes): its dtype is floating (integer only for the
   keys the caller allows, never bool, complex or object), its shape is the expected one, and the
   size its header declares is the size of its zip entry and under :data:`MAX_ARRAY_BYTES`;
4. then the arrays themselves, which must hold finite values only.

Every refusal is a :class:`CheckpointError` naming the file and the key.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "tinygan-checkpoint"
VERSION = 1
META_KEY = "__meta__"
MAX_META_BYTES = 64 * 2**20  # a 180-epoch history is ~0.2 MB
MAX_ARRAY_BYTES = 2**28  # the largest array of the seed models is 3.2 MB; this only stops absurd entries


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, damaged, or does not match what it is loaded into."""


def save_checkpoint(path: str | os.PathLike, arrays: dict[str, Any], meta: dict[str, Any]) -> Path:
    """Write ``arrays`` (host arrays) and ``meta`` (JSON-serializable) to ``path`` atomically. Refuses
    (CheckpointError naming the key, nothing written) an array with NaN or infinite values."""
    path = Path(path)
    host = {k: np.asarray(v) for k, v in arrays.items()}
    for key, value in host.items():
        _check_finite(path, key, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "version": VERSION, **meta}
    try:
        text = json.dumps(meta, allow_nan=False)
    except ValueError as exc:  # NaN or infinity in the metadata (a history row, say): not a record to resume from
        raise CheckpointError(f"{path}: key {META_KEY!r}: {exc}") from None
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **{META_KEY: np.array(text)}, **host)
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


def checkpoint_path(path: str | os.PathLike) -> Path:
    """``path`` itself, or ``path/checkpoint.npz`` for a run folder."""
    path = Path(path)
    return path / "checkpoint.npz" if path.is_dir() else path


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """Only a checkpoint's metadata (its configuration, epoch, ...): no array is decompressed."""
    path = checkpoint_path(path)
    with _open(path) as archive:
        return _read_meta(path, archive, _members(path, archive))


def load_checkpoint(
    path: str | os.PathLike,
    expected: Mapping[str, tuple[int, ...] | None] | None = None,
    optional: Collection[str] = (),
    integer_keys: Collection[str] = ("perm",),
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read and validate a checkpoint: ``(arrays, meta)``.

    ``expected`` maps every key the caller needs to its shape (None: any shape); with it, a missing or
    unexpected key is refused before anything is decompressed, and so is an array of another shape.
    ``optional`` keys of ``expected`` may be absent. ``integer_keys`` may hold integers; every other
    array must be floating. Raises :class:`CheckpointError` naming the file and the key."""
    path = checkpoint_path(path)
    with _open(path) as archive:
        members = _members(path, archive)
        meta = _read_meta(path, archive, members)
        keys = set(members) - {META_KEY}
        if expected is not None:
            missing = sorted(set(expected) - keys - set(optional))
            unexpected = sorted(keys - set(expected))
            if missing or unexpected:
                raise CheckpointError(
                    f"{path}: keys do not match this model: missing {missing or 'none'}, "
                    f"unexpected {unexpected or 'none'}"
                )
        headers = {key: _header(path, archive, members[key], key, integer_keys) for key in sorted(keys)}
        if expected is not None:
            for key, (shape, _dtype, _offset) in headers.items():
                want = expected[key]
                if want is not None and tuple(want) != shape:
                    raise CheckpointError(f"{path}: key {key!r}: expected shape {tuple(want)}, received {shape}")
        arrays = {}
        for key, (shape, dtype, offset) in headers.items():
            try:
                with archive.open(members[key]) as f:
                    f.read(offset)
                    data = f.read()
            except (ValueError, OSError, EOFError, zipfile.BadZipFile, RuntimeError) as exc:
                # A damaged archive whose headers still read: the CRC of the data fails only here.
                raise CheckpointError(f"{path}: key {key!r}: unreadable array data (damaged file?): {exc}") from None
            arrays[key] = np.frombuffer(data, dtype=dtype).reshape(shape).copy()
            _check_finite(path, key, arrays[key])
    return arrays, meta


def _open(path: Path) -> zipfile.ZipFile:
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise CheckpointError(f"{path}: not a readable tinygan checkpoint (expected a .npz archive): {exc}") from None


def _members(path: Path, archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    members: dict[str, zipfile.ZipInfo] = {}
    for info in archive.infolist():
        if not info.filename.endswith(".npy") or info.is_dir():
            raise CheckpointError(f"{path}: member {info.filename!r} is not an array (.npy): not a tinygan checkpoint")
        key = info.filename[: -len(".npy")]
        if key in members:
            raise CheckpointError(f"{path}: key {key!r} appears twice")
        members[key] = info
    if META_KEY not in members:
        raise CheckpointError(f"{path}: not a tinygan checkpoint (no metadata record {META_KEY!r})")
    return members


def _header(
    path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo, key: str, integer_keys: Collection[str]
) -> tuple[tuple[int, ...], np.dtype, int]:
    """Shape, dtype and data offset from the member's .npy header; checks dtype and declared size."""
    try:
        with archive.open(info) as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(f)
            offset = f.tell()
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, RuntimeError) as exc:
        raise CheckpointError(f"{path}: key {key!r}: unreadable array header: {exc}") from None
    shape = tuple(int(d) for d in shape)
    allowed = "fiu" if key in integer_keys else "f"
    if dtype.hasobject or dtype.kind not in allowed or dtype.fields is not None or dtype.subdtype is not None:
        want = "a floating or integer" if key in integer_keys else "a floating-point"
        raise CheckpointError(f"{path}: key {key!r}: expected {want} array, received dtype {dtype}")
    if fortran:
        raise CheckpointError(f"{path}: key {key!r}: expected a C-ordered array, received Fortran order")
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > MAX_ARRAY_BYTES:
        raise CheckpointError(
            f"{path}: key {key!r}: declares {nbytes:,} bytes (shape {shape}), more than the {MAX_ARRAY_BYTES:,} allowed"
        )
    if info.file_size != offset + nbytes:
        raise CheckpointError(
            f"{path}: key {key!r}: its header declares {nbytes:,} bytes of data (shape {shape}, {dtype}) but its "
            f"zip entry holds {info.file_size - offset:,}"
        )
    return shape, dtype, offset


def _read_meta(path: Path, archive: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo]) -> dict[str, Any]:
    info = members[META_KEY]
    if info.file_size > MAX_META_BYTES:
        raise CheckpointError(
            f"{path}: key {META_KEY!r}: {info.file_size:,} bytes of metadata, more than the {MAX_META_BYTES:,} allowed"
        )
    shape, dtype, offset = _meta_header(path, archive, info)
    try:
        with archive.open(info) as f:
            f.read(offset)
            raw = f.read()
        text = str(np.frombuffer(raw, dtype=dtype).reshape(shape)[()])
        meta = json.loads(text, parse_constant=_no_constant)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, RuntimeError) as exc:
        raise CheckpointError(f"{path}: key {META_KEY!r}: corrupt checkpoint metadata: {exc}") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: key {META_KEY!r}: expected a JSON object, received {type(meta).__name__}")
    if "format" not in meta and "version" not in meta:
        return meta  # written by tinygan 0.1 before the record named its format: the same keys, still checked
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: key 'format': expected {FORMAT!r}, received {meta.get('format')!r}")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{path}: key 'version': expected {VERSION}, received {meta.get('version')!r}")
    return meta


def _meta_header(path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> tuple[tuple, np.dtype, int]:
    try:
        with archive.open(info) as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _fortran, dtype = read(f)
            offset = f.tell()
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, RuntimeError) as exc:
        raise CheckpointError(f"{path}: key {META_KEY!r}: unreadable header: {exc}") from None
    if dtype.kind != "U" or tuple(shape) != () or info.file_size != offset + dtype.itemsize:
        raise CheckpointError(f"{path}: key {META_KEY!r}: expected one JSON string, received {dtype} of shape {shape}")
    return tuple(shape), dtype, offset


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number a checkpoint may hold")


def _check_finite(path: Path, key: str, value: np.ndarray) -> None:
    if value.dtype.kind in "fc" and value.size and not np.isfinite(value).all():
        bad = int(value.size - np.count_nonzero(np.isfinite(value)))
        raise CheckpointError(f"{path}: key {key!r}: {bad:,} of {value.size:,} values are NaN or infinite")


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


def set_rng_state(generator: Any, state: Any) -> None:
    """Restore :func:`rng_state`'s output; a state of the wrong kind or form raises CheckpointError."""
    if not isinstance(state, dict) or not isinstance(state.get("state"), dict):
        raise CheckpointError(f"expected a generator state object, received {state!r:.80}")
    kind = "numpy" if isinstance(generator, np.random.Generator) else "device"
    if state.get("kind") != kind:
        raise CheckpointError(f"expected a {kind} generator state, received {state.get('kind')!r}")
    try:
        if kind == "numpy":
            expected = generator.bit_generator.state
            if state["state"].get("bit_generator") != expected["bit_generator"]:
                raise ValueError(
                    f"bit generator {state['state'].get('bit_generator')!r}, expected {expected['bit_generator']!r}"
                )
            generator.bit_generator.state = state["state"]
        else:
            seed, counter = state["state"].get("seed"), state["state"].get("counter")
            if type(seed) is not int or type(counter) is not int or seed < 0 or counter < 0:
                raise ValueError(f"seed and counter must be non-negative integers, received {seed!r}, {counter!r}")
            generator.load_state_dict(state["state"])
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise CheckpointError(f"bad {kind} generator state: {exc}") from None
