"""Damaged and hostile checkpoints: each is refused with one line naming the file and the key, before the
damage can reach the weights, and without decompressing what the model does not need."""

import io
import json
import zipfile

import numpy as np
import pytest

from tinygan.checkpoint import CheckpointError, load_checkpoint, read_meta
from tinygan.sample import load_generator
from tinygan.train import GANConfig, GANTrainer


@pytest.fixture(scope="module")
def data():
    return np.random.default_rng(0).random((50, 784)).astype(np.float32)


@pytest.fixture(scope="module")
def good(tmp_path_factory, data):
    """A finished one-epoch run, and a run stopped mid-epoch (both tiny)."""
    root = tmp_path_factory.mktemp("runs")
    config = GANConfig(epochs=2, batch_size=10, g_options={"seed": 0}, d_options={"seed": 1}, log_every=2)
    trainer = GANTrainer(config, data, root / "mid", progress=False)
    trainer.run(on_step=lambda t: t.global_step == 7 and t.request_stop())
    return root / "mid" / "checkpoint.npz"


def write_raw(path, arrays, meta):
    """A checkpoint written without save_checkpoint's checks (what a damaged or hostile file looks like)."""
    np.savez(path, __meta__=np.array(meta if isinstance(meta, str) else json.dumps(meta)), **arrays)
    return path


def resume(path, data):
    return GANTrainer.resume(path, data, progress=False, model="mnist_dense")


def test_the_good_checkpoint_resumes(good, data):
    trainer = resume(good, data)
    assert (trainer.epoch, trainer.step_in_epoch) == (1, 2)


def test_a_checkpoint_written_before_the_format_was_recorded_still_resumes(tmp_path, good, data):
    """tinygan 0.1 wrote the same keys without 'format' and 'version': such runs must still resume."""
    arrays, meta = load_checkpoint(good)
    del meta["format"], meta["version"]
    trainer = resume(write_raw(tmp_path / "old.npz", arrays, meta), data)
    assert (trainer.epoch, trainer.step_in_epoch) == (1, 2)
    meta["version"] = 1  # but a record that names one half of it is damaged
    with pytest.raises(CheckpointError, match="key 'format'"):
        resume(write_raw(tmp_path / "half.npz", arrays, meta), data)


def test_a_checkpoint_from_before_the_per_step_diagnostics_still_resumes(tmp_path, good, data):
    """Checkpoints written before g_input_grad and g_weight_share were step figures have no sums for them:
    they resume (those sums from 0); a checkpoint missing any other sum is damaged."""
    arrays, meta = load_checkpoint(good)
    for key in ("g_input_grad", "g_weight_share"):
        del meta["sums"][key]
    trainer = resume(write_raw(tmp_path / "older.npz", arrays, meta), data)
    assert (trainer.epoch, trainer.step_in_epoch) == (1, 2)
    assert trainer.sums["g_input_grad"] == 0.0 and trainer.sums["d_loss"] == meta["sums"]["d_loss"]
    trainer.run()  # and trains to its end
    assert trainer.finished
    del meta["sums"]["d_loss"]
    with pytest.raises(CheckpointError, match="key 'sums'"):
        resume(write_raw(tmp_path / "damaged.npz", arrays, meta), data)


@pytest.mark.parametrize(
    "dtype, what",
    [(np.int32, "int32"), (np.bool_, "bool"), (np.complex64, "complex64")],
)
def test_weights_of_other_dtypes_are_refused_not_cast(tmp_path, good, data, dtype, what):
    arrays, meta = load_checkpoint(good)
    arrays["G/0.W"] = np.ones(arrays["G/0.W"].shape, dtype)
    bad = write_raw(tmp_path / "bad.npz", arrays, meta)
    message = rf"bad.npz: key 'G/0.W': expected a floating-point array, received dtype {what}"
    with pytest.raises(CheckpointError, match=message):
        resume(bad, data)
    with pytest.raises(CheckpointError, match=message):
        load_generator(bad)  # the sampler reads through the same checks


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_weights_are_refused(tmp_path, good, data, value):
    arrays, meta = load_checkpoint(good)
    arrays["D/3.W"][5, 7] = value
    arrays["opt_G/v.0.b"][0] = value
    bad = write_raw(tmp_path / "bad.npz", arrays, meta)
    with pytest.raises(CheckpointError, match=r"bad.npz: key 'D/3.W': 1 of 524,288 values are NaN or infinite"):
        resume(bad, data)


def test_unused_key_is_refused_before_anything_is_decompressed(tmp_path, good, data, monkeypatch):
    """An extra member holding 256 MiB of zeros compressed to a few hundred KiB: refused from the zip
    directory, without opening that member."""
    bad = tmp_path / "bomb.npz"
    bad.write_bytes(good.read_bytes())
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (2**26,)})
    with zipfile.ZipFile(bad, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("junk.npy", "w", force_zip64=True) as member:
            member.write(header.getvalue())
            zeros = bytes(2**24)
            for _ in range(16):
                member.write(zeros)
    assert bad.stat().st_size < good.stat().st_size + 2**20
    opened = []
    real_open = zipfile.ZipFile.open

    def recording_open(self, name, *args, **kwargs):
        opened.append(getattr(name, "filename", name))
        return real_open(self, name, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", recording_open)
    with pytest.raises(
        CheckpointError, match=r"bomb.npz: keys do not match this model: missing none, unexpected \['junk'\]"
    ):
        resume(bad, data)
    assert "junk.npy" not in opened


def test_absurd_declared_size_is_refused_from_the_header(tmp_path, good):
    bad = tmp_path / "huge.npz"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            if info.filename == "G/0.W.npy":
                header = io.BytesIO()
                shape = (10**6, 10**6)
                np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": shape})
                dst.writestr(info.filename, header.getvalue() + b"\0" * 64)
            else:
                dst.writestr(info, src.read(info))
    with pytest.raises(CheckpointError, match=r"huge.npz: key 'G/0.W': declares 4,000,000,000,000 bytes"):
        load_checkpoint(bad)


def test_header_and_entry_size_must_agree(tmp_path, good):
    bad = tmp_path / "short.npz"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            payload = src.read(info)
            dst.writestr(info, payload[:-4] if info.filename == "D/9.b.npy" else payload)
    with pytest.raises(CheckpointError, match=r"short.npz: key 'D/9.b': its header declares 4 bytes .* holds 0"):
        load_checkpoint(bad)


def test_damaged_array_data_is_refused_in_one_line(tmp_path, good, data):
    """Bytes of an array's data overwritten, its header intact: the archive opens and the headers read, and the
    data's CRC fails only when it is read. A user resuming such a file gets a CheckpointError, not a traceback."""
    bad = tmp_path / "damaged.npz"
    with zipfile.ZipFile(good) as src:
        info = src.getinfo("G/0.W.npy")
    raw = bytearray(good.read_bytes())
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)  # the member's stored bytes
    middle = start + info.compress_size // 2
    raw[middle : middle + 64] = bytes(64)
    bad.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=r"damaged.npz: key 'G/0.W': unreadable array data"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match="unreadable array data"):
        resume(bad, data)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"epoch": -5}, r"key 'epoch': expected an integer in \[0, 2\], received -5"),
        ({"epoch": "1"}, r"key 'epoch': expected an integer in \[0, 2\], received '1'"),
        ({"step_in_epoch": 1e6}, r"key 'step_in_epoch': expected a non-negative integer, received 1000000.0"),
        ({"step_in_epoch": 10**6}, r"key 'step_in_epoch': expected fewer than the 5 steps of an epoch"),
        ({"global_step": True}, r"key 'global_step': expected a non-negative integer, received True"),
        ({"config.image_range": "bogus"}, r"key 'config': image_range: expected one of \['01', 'tanh'\]"),
        ({"config.lr_d": "0.1"}, r"key 'config': lr_d: expected a number in \[0, 1\], received '0.1'"),
        ({"config.epochs": 0}, r"key 'config': epochs: expected an integer >= 1, received 0"),
        ({"config.real_label": 5}, r"key 'config': real_label: expected \[LOW, HIGH\] .*, received 5$"),
        ({"config.g_options.latent_dim": "100"}, r"key 'config': g_options.latent_dim: expected an integer >= 1"),
        ({"sums.d_loss": "x"}, r"key 'sums.d_loss': expected a finite number"),
        ({"history": {}}, r"key 'history': expected a list of 1 rows"),
        ({"rng.trainer": {"kind": "numpy", "state": {"bit_generator": "MT19937"}}}, r"key 'rng.trainer': .*MT19937"),
        ({"rng.trainer": "garbage"}, r"key 'rng': expected an object"),
        ({"opt_G_step": -1}, r"key 'opt_G_step': expected a non-negative integer, received -1"),
    ],
)
def test_metadata_schema(tmp_path, good, data, change, message):
    arrays, meta = load_checkpoint(good)
    ((key, value),) = change.items()
    target = meta
    *parents, last = key.split(".")
    for part in parents:
        target = target[part]
    target[last] = value
    bad = write_raw(tmp_path / "bad.npz", arrays, meta)
    with pytest.raises(CheckpointError, match=r"bad.npz: " + message):
        resume(bad, data)


@pytest.mark.parametrize(
    "text, message",
    [
        ("[1, 2]", r"key '__meta__': expected a JSON object, received list"),
        ("{", r"key '__meta__': corrupt checkpoint metadata"),
        ('{"format": "tinygan-checkpoint", "version": NaN}', r"key '__meta__': corrupt .*NaN"),
        ('{"format": "other"}', r"key 'format': expected 'tinygan-checkpoint', received 'other'"),
    ],
)
def test_metadata_that_is_not_a_checkpoint_record(tmp_path, good, text, message):
    arrays, _ = load_checkpoint(good)
    bad = write_raw(tmp_path / "bad.npz", arrays, text)
    with pytest.raises(CheckpointError, match=r"bad.npz: " + message):
        read_meta(bad)


def test_mid_epoch_order_must_be_a_permutation_of_the_data(tmp_path, good, data):
    arrays, meta = load_checkpoint(good)
    arrays["perm"] = np.full_like(arrays["perm"], 10**9)
    bad = write_raw(tmp_path / "bad.npz", arrays, meta)
    with pytest.raises(CheckpointError, match=r"bad.npz: key 'perm': saved mid-epoch, expected an order of the 50"):
        resume(bad, data)


def test_a_checkpoint_of_the_other_model_says_which_it_is(tmp_path, good, data):
    arrays, meta = load_checkpoint(good)
    meta["config"]["model"] = "dcgan"
    bad = write_raw(tmp_path / "dcgan.npz", arrays, meta)
    with pytest.raises(CheckpointError, match=r"dcgan.npz: key 'config.model': this checkpoint holds the CIFAR-10"):
        resume(bad, data)
