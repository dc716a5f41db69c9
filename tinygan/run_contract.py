"""The run contract: what a run folder promises, and what resuming it checks.

- One run at a time per folder: :class:`RunLock` holds ``RUN/.lock`` for the run's life, recording its
  owner (PID, host, boot and the process's start time: :class:`LockOwner`); a second run given the same
  folder is refused with one line, and a lock whose owner has provably ended (the process is gone, the
  machine restarted, or its PID now belongs to a later process) is taken over with a one-line note.
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

import dataclasses
import functools
import hashlib
import json
import math
import os
import re
import socket
import time
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
    """Whether a process with this PID exists (any process: PIDs are reused; see :func:`_judge`)."""
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
    except (OSError, OverflowError):  # OverflowError: beyond any PID there can be (a damaged record)
        return False
    return True


def _boot_id() -> str | None:
    """This boot of this machine's kernel (Linux), or None where there is no /proc."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def _start_ticks(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (/proc/PID/stat field 22), or None where
    it cannot be read (no /proc, no such process, hidden by hidepid)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:  # the command name (field 2) may hold spaces and parentheses: count from the last ')'
        return int(stat.rpartition(")")[2].split()[19])
    except (IndexError, ValueError):
        return None


def _start_epoch(pid: int) -> float | None:
    """When process ``pid`` started, in seconds since the epoch (boot time + start ticks), or None."""
    ticks = _start_ticks(pid)
    try:
        boot = next(
            int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime ")
        )
        hz = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return None if ticks is None or hz <= 0 else boot + ticks / hz


@dataclasses.dataclass(frozen=True)
class LockOwner:
    """Who holds a run lock: the PID, and what tells that process apart from a later one given the same
    PID: the machine (host name), its boot (``boot_id``) and the process's start time (``start``, clock
    ticks since boot). Where there is no /proc, ``boot_id`` and ``start`` are None."""

    pid: int
    host: str | None = None
    boot_id: str | None = None
    start: int | None = None

    @classmethod
    def this_process(cls) -> LockOwner:
        """This process, as its locks record it: read once per process (a forked child is another), so a
        host name that changes while it runs (DHCP) does not make its own lock look foreign."""
        return _this_process(os.getpid())

    def to_text(self) -> str:
        return json.dumps(dataclasses.asdict(self)) + "\n"

    @classmethod
    def parse(cls, text: str) -> LockOwner | None:
        """The owner a lock file records: this format, or the bare PID that tinygan wrote before it
        (host, boot and start unknown). None for anything else."""
        text = text.strip()
        if text.isdigit():
            return cls(int(text))
        try:
            record = json.loads(text)
        except ValueError:
            return None
        if not isinstance(record, dict):
            return None
        names = [f.name for f in dataclasses.fields(cls)]  # keys a later version may add are ignored
        owner = cls(**{name: record.get(name) for name in names})
        ok = owner is not None and type(owner.pid) is int and owner.pid > 0
        ok = ok and all(v is None or isinstance(v, str) for v in (owner.host, owner.boot_id))
        return owner if ok and (owner.start is None or type(owner.start) is int) else None


@functools.lru_cache(maxsize=4)
def _this_process(pid: int) -> LockOwner:
    return LockOwner(pid, socket.gethostname(), _boot_id(), _start_ticks(pid))


# A lock file that cannot be parsed and is younger than this may be one being written (on a file system
# without hard links, where it is created empty and then filled); older, it is damaged and taken over.
LOCK_WRITE_SECONDS = 10.0


def _judge(owner: LockOwner, written: float) -> tuple[bool, str]:
    """``(held, why)`` for the lock of ``owner``, written at ``written`` (the file's mtime): held where
    that process may still run, or where this machine cannot tell; otherwise why it is provably gone."""
    me = LockOwner.this_process()
    pid = owner.pid
    if owner.host is not None and owner.host != me.host:
        return True, f"on {owner.host}, which this machine ({me.host}) cannot check"
    if owner.boot_id is not None and me.boot_id is not None and owner.boot_id != me.boot_id:
        return False, f"process {pid} ran before this machine restarted"
    if pid == me.pid:  # not this process (that would be `me`), so one that had its PID before
        return False, f"process {pid} has ended (this process has its PID now)"
    if not _alive(pid):
        return False, f"process {pid} has ended"
    if owner.start is not None:
        now = _start_ticks(pid)
        if now is not None and now != owner.start:
            return False, f"process {pid} has ended (PID {pid} now belongs to another process, started later)"
        return True, ""
    # A bare-PID lock (tinygan before the owner's start time was recorded): judged by when it was written.
    if _started_after(pid, written):
        return False, f"process {pid} has ended (PID {pid} now belongs to a process started after the lock)"
    return True, ""


def _started_after(pid: int, written: float) -> bool:
    """Whether process ``pid`` provably started after ``written`` (a file's mtime), so cannot have written
    that file. The boot time is whole seconds: 2 s of rounding are allowed. False where /proc is missing."""
    started = _start_epoch(pid)
    return started is not None and started > written + 2.0


class RunLock:
    """``RUN/.lock`` recording this process (:class:`LockOwner`) while the run is alive. Re-entrant within
    one process (the examples take it before loading data, the trainer again for its run).

    A lock whose owner is provably gone is taken over with a one-line note: the process has ended, the
    machine has restarted since, or the PID now belongs to a process that started after the lock was
    written. A lock of another machine (a shared file system), or one this machine cannot check (no
    /proc: only whether the PID exists), counts as held: the refusal says how to free it."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.owned = False
        self.note: str | None = None  # what taking over a stale lock said

    def acquire(self) -> RunLock:
        self.folder.mkdir(parents=True, exist_ok=True)
        me = LockOwner.this_process()
        for _ in range(5):
            if _create(self.path, me.to_text()):
                self.owned = True
                return self
            try:
                text, written = self.path.read_text(), self.path.stat().st_mtime
            except FileNotFoundError:
                continue  # released meanwhile
            except (OSError, UnicodeDecodeError) as exc:
                raise RunLocked(f"{self.folder}: cannot read the run lock {self.path}: {exc}") from None
            owner = LockOwner.parse(text)
            if owner == me:
                return self  # this process holds it already: the outer holder releases it
            if owner is None:
                age = time.time() - written
                held, why = age < LOCK_WRITE_SECONDS, f"the lock is unreadable ({text.strip()!r:.40})"
            else:
                held, why = _judge(owner, written)
            if held:
                raise RunLocked(_in_use_message(self.folder, self.path, owner, why)) from None
            if self._take_over(text):
                self.note = f"note: {self.path}: {why}; taking the run folder over"
                print(self.note)
        raise RunLocked(f"{self.folder}: could not take the run lock {self.path}")

    def _take_over(self, judged: str) -> bool:
        """Remove the stale lock whose text was ``judged``; False where another process replaced it
        meanwhile (that newer lock is put back)."""
        stale = self.path.with_name(f"{LOCK_NAME}.stale-{os.getpid()}")
        try:
            os.replace(self.path, stale)  # atomic: of two processes taking it over, one moves it
        except FileNotFoundError:
            return False
        try:
            if stale.read_text() == judged:
                return True
            # Another process took the stale lock over first and wrote its own: give it back, then judge again.
            try:
                os.link(stale, self.path)
            except OSError:
                pass
            return False
        finally:
            stale.unlink(missing_ok=True)

    def release(self) -> None:
        if self.owned:
            self.owned = False
            try:
                mine = LockOwner.parse(self.path.read_text()) == LockOwner.this_process()
            except OSError:
                return
            if mine:
                self.path.unlink(missing_ok=True)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _in_use_message(folder: Path, path: Path, owner: LockOwner | None, why: str) -> str:
    if owner is None:
        return f"{folder} is in use: its lock {path} is being written; try again in a few seconds"
    if why:  # held by another machine's process: only its owner or the user can tell that it has ended
        return (
            f"{folder} is in use by another run (process {owner.pid} {why}, {path}); if that run has ended, "
            f"delete {path}, else choose another --out"
        )
    return (
        f"{folder} is in use by another run (process {owner.pid}, {path}); wait for it to finish or choose "
        "another --out"
    )


def _create(path: Path, text: str) -> bool:
    """Create ``path`` holding ``text``, complete or not at all; False if it exists. A hard link of a
    finished temporary file makes it appear whole; where the file system has no hard links, it is
    created exclusively and then written (a reader may see it empty for a moment)."""
    tmp = path.with_name(f"{path.name}.new-{os.getpid()}")
    try:
        tmp.write_text(text)
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        except OSError:  # no hard links here
            pass
    finally:
        tmp.unlink(missing_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return True


_TMP = re.compile(r"^\..+\.tmp-(\d+)$")


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete ``.NAME.tmp-PID`` files (unfinished checkpoint writes) in ``folder`` and its
    ``checkpoints/`` whose process is gone (or whose PID now belongs to a process started after the file
    was written); returns what was removed."""
    removed = []
    for where in (Path(folder), Path(folder) / "checkpoints"):
        if not where.is_dir():
            continue
        for path in where.iterdir():
            match = _TMP.match(path.name)
            pid = int(match.group(1)) if match else 0
            if match and path.is_file() and (not _alive(pid) or _started_after(pid, path.stat().st_mtime)):
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


# Step figures added after checkpoints were first written (tinygan.step.FIGURES): what G receives and how evenly
# the batch shares G's step, per step since 2026-12-02 (before, the probe measured the first once an epoch).
LATER_FIGURES = ("g_input_grad", "g_weight_share")


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
    # Checkpoints written before the per-step diagnostics (LATER_FIGURES) were figures of the step lack their
    # sums; they resume with those sums at 0 (GANTrainer.load_state), every other key must be there.
    required = [key for key in metrics if key not in LATER_FIGURES]
    ok = isinstance(sums, dict) and set(required) <= set(sums) <= set(metrics)
    _field(path, "sums", sums, ok, f"an object with keys {metrics}")
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
