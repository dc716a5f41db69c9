"""The run contract: what a run folder promises, and what resuming it checks.

- One run at a time per folder: :class:`RunLock` holds ``RUN/.lock`` (the owner's PID) for the run's
  life; a second run given the same folder is refused with one line, and a lock left by a process that
  no longer exists is taken over.
- Temporary files of checkpoint writes that a killed process left behind (``.NAME.tmp-PID``) are
  removed when a run takes the folder (:func:`remove_stale_temporaries`).
- A checkpoint's metadata follows a schema (:func:`validate_meta`): a JSON object whose every field
  has its type and range, checked before anything is restored; a checkpoint of the other model is
  refused saying which model it holds (:func:`check_model`).
- A run records the identity of its data (:func:`data_identity`: source, image count, shape, a
  digest); resuming it on other data is refused unless asked for explicitly (:func:`check_data`).

What may change on a resume is :data:`tinygan.config.RESUME_SAFE`; the examples refuse any other
option that differs from the run's record (``tinygan.cli``).
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from tinygan.checkpoint import CheckpointError
from tinygan.config import GANConfig
from tinygan.models import MODEL_TITLES

LOCK_NAME = ".lock"


class RunLocked(RuntimeError):
    """Another live process holds the run folder."""


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, but belongs to someone else
        return True
    except OSError:
        return False
    return True


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


class RunLock:
    """``RUN/.lock`` holding this process's PID while the run is alive. Re-entrant within one process
    (the examples take it before loading data, the trainer again for its run)."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.owned = False

    def acquire(self) -> RunLock:
        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                pid = _read_pid(self.path)
                if pid == os.getpid():
                    return self  # this process holds it already: the outer holder releases it
                if pid is not None and _alive(pid):
                    raise RunLocked(
                        f"{self.folder} is in use by another run (process {pid}, {self.path}); wait for it to "
                        "finish or choose another --out"
                    ) from None
                # Left by a process that is gone (or half written): take it over. The rename is atomic, so
                # of two processes taking over the same stale lock only one proceeds to create the new one.
                stale = self.path.with_name(f"{LOCK_NAME}.stale-{os.getpid()}")
                try:
                    os.replace(self.path, stale)
                    stale.unlink()
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w") as f:
                f.write(f"{os.getpid()}\n")
            self.owned = True
            return self
        raise RunLocked(f"{self.folder}: could not take the run lock {self.path}")

    def release(self) -> None:
        if self.owned:
            self.owned = False
            if _read_pid(self.path) == os.getpid():
                self.path.unlink(missing_ok=True)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


_TMP = re.compile(r"^\..+\.tmp-(\d+)$")


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete ``.NAME.tmp-PID`` files (unfinished checkpoint writes) in ``folder`` and its
    ``checkpoints/`` whose process is gone; returns what was removed."""
    removed = []
    for where in (Path(folder), Path(folder) / "checkpoints"):
        if not where.is_dir():
            continue
        for path in where.iterdir():
            match = _TMP.match(path.name)
            if match and path.is_file() and not _alive(int(match.group(1))):
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def data_identity(data: np.ndarray, source: str) -> dict[str, Any]:
    """What a run records of its data: where it came from, how many images of which shape, and a
    BLAKE2b digest of the arrays as trained on (after scaling and --limit)."""
    data = np.ascontiguousarray(data)
    digest = hashlib.blake2b(memoryview(data).cast("B"), digest_size=16).hexdigest()
    return {"source": str(source), "images": int(len(data)), "shape": list(data.shape[1:]), "digest": digest}


def check_data(path: Path, recorded: Any, given: dict[str, Any], allow_other: bool = False) -> str | None:
    """Refuse (CheckpointError) resuming on data other than the run's unless ``allow_other``; returns a
    note to print when the data differs and that was allowed, or when the run recorded none."""
    if recorded is None:
        return f"note: {path} records no data identity (an older run); cannot check that the data is the same"
    same = recorded.get("digest") == given["digest"] and recorded.get("images") == given["images"]
    if same:
        return None
    what = (
        f"it was trained on {recorded.get('images')} images from {recorded.get('source')} "
        f"(digest {recorded.get('digest')}), this data is {given['images']} images from {given['source']} "
        f"(digest {given['digest']})"
    )
    if not allow_other:
        raise CheckpointError(
            f"{path}: other data than the run's: {what}; pass the run's --data-dir, or --allow-other-data to "
            "continue on this data"
        )
    return f"note: continuing on other data (--allow-other-data): {what}"


def check_model(path: Path, config: GANConfig, model: str) -> None:
    """Refuse a checkpoint of another model than ``model`` naming the one it holds."""
    if config.model != model:
        raise CheckpointError(
            f"{path}: key 'config.model': this checkpoint holds {MODEL_TITLES.get(config.model, config.model)}, "
            f"not {MODEL_TITLES.get(model, model)}"
        )


def _field(path: Path, key: str, value: Any, ok: bool, expected: str) -> None:
    if not ok:
        raise CheckpointError(f"{path}: key {key!r}: expected {expected}, received {value!r:.80}")


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_config(path: str | os.PathLike, meta: dict[str, Any]) -> GANConfig:
    """The configuration a checkpoint's metadata records, read through its one schema
    (:meth:`GANConfig.from_dict`); CheckpointError naming the file and the field."""
    try:
        return GANConfig.from_dict(meta.get("config"))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: key 'config': {exc}") from None


def validate_meta(path: Path, meta: dict[str, Any], metrics: tuple[str, ...]) -> GANConfig:
    """Check a GAN checkpoint's metadata against its schema; returns its configuration. Raises
    CheckpointError naming the file and the key."""
    config = read_config(path, meta)
    epoch = meta.get("epoch")
    _field(path, "epoch", epoch, _int(epoch) and 0 <= epoch <= config.epochs, f"an integer in [0, {config.epochs}]")
    for key in ("step_in_epoch", "global_step", "opt_G_step", "opt_D_step", "dominated_epochs"):
        value = meta.get(key, 0) if key == "dominated_epochs" else meta.get(key)
        _field(path, key, value, _int(value) and value >= 0, "a non-negative integer")
    sums = meta.get("sums")
    _field(path, "sums", sums, isinstance(sums, dict) and set(sums) == set(metrics), f"an object with keys {metrics}")
    for key, value in sums.items():
        _field(path, f"sums.{key}", value, _finite(value), "a finite number")
    seconds = meta.get("epoch_seconds_before", 0.0)
    _field(path, "epoch_seconds_before", seconds, _finite(seconds) and seconds >= 0, "a non-negative number")
    best = meta.get("best_balance")
    _field(path, "best_balance", best, best is None or (_finite(best) and 0 <= best <= 0.5), "null or in [0, 0.5]")
    history = meta.get("history")
    ok = isinstance(history, list) and len(history) == epoch
    _field(path, "history", f"{type(history).__name__} of {len(history) if ok else '?'}", ok, f"a list of {epoch} rows")
    for i, row in enumerate(history):
        ok = isinstance(row, dict) and all(isinstance(k, str) and _finite(v) for k, v in row.items())
        _field(path, f"history[{i}]", row, ok, "an object of finite numbers")
    rng = meta.get("rng")
    _field(path, "rng", rng, isinstance(rng, dict) and all(isinstance(v, dict) for v in rng.values()), "an object")
    data = meta.get("data")
    ok = data is None or (
        isinstance(data, dict)
        and isinstance(data.get("digest"), str)
        and _int(data.get("images"))
        and isinstance(data.get("source"), str)
    )
    _field(path, "data", data, ok, "null or an object with source, images and digest")
    return config
