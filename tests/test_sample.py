"""python -m tinygan.sample: writes exactly what it reports, and refuses bad files and options in one line."""

import io
import json
import os
import stat
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

import tinygan.sample as sampler
from tinygan import backend
from tinygan.checkpoint import FORMAT, VERSION, CheckpointError, save_checkpoint
from tinygan.cli import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_NO_GPU
from tinygan.models import build
from tinygan.sample import load_generator, main, sample

CONFIG = {"model": "mnist_dense", "g_options": {}, "image_range": "01"}


def write_checkpoint(path: Path, mutate=None, meta=None) -> Path:
    """A generator-only checkpoint as the trainer writes it (keys ``G/...``, config in the metadata)."""
    arrays = {f"G/{k}": v for k, v in build("mnist_dense", "G").state_dict().items()}
    if mutate is not None:
        mutate(arrays)
    # Written with NumPy directly, in the checkpoint's format: save_checkpoint itself refuses the NaN
    # weights some of these tests need (a file from elsewhere, or from an older tinygan, can hold them).
    meta = {"format": FORMAT, "version": VERSION, "config": dict(CONFIG)} if meta is None else meta
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, __meta__=np.array(json.dumps(meta)), **arrays)
    return path


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("run") / "checkpoint.npz")


def run_main(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def refused(capsys, *argv, code=EXIT_ERROR) -> str:
    """main() must refuse with exactly one ``error: ...`` line on stderr, nothing on stdout."""
    got, out, err = run_main(capsys, *argv)
    assert got == code, err
    assert out == "" and err.count("\n") == 1 and err.startswith("error: "), err
    return err.strip()


# ---------------------------------------------------------------- what it writes


def test_writes_exactly_the_reported_paths(tmp_path, capsys, good):
    out, grid = tmp_path / "new" / "samples", tmp_path / "g.png"  # no .npy: not appended behind the user's back
    code, stdout, err = run_main(capsys, good, "--n", 7, "--batch-size", 3, "--out", out, "--grid", grid, "--seed", 5)
    assert code == 0, err
    assert stdout.splitlines() == [f"wrote 7 images (28, 28) to {out}", f"wrote a grid of 7 images to {grid}"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.png", "new"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["samples"]
    images = np.load(out)
    assert images.shape == (7, 28, 28) and images.dtype == np.float32 and 0 <= images.min() and images.max() <= 1
    # the batches draw one noise stream: the same images as one call with another batch size (up to the
    # float32 rounding of a matmul over another number of rows)
    np.testing.assert_allclose(images, sample(good, 7, seed=5, batch_size=1000), rtol=0, atol=1e-6)
    assert not np.array_equal(images, sample(good, 7, seed=6))
    from PIL import Image

    assert Image.open(grid).format == "PNG"


def test_run_folder_is_accepted(tmp_path, capsys, good):
    code, _, err = run_main(capsys, good.parent, "--n", 2, "--out", tmp_path / "s.npy")
    assert code == 0, err and np.load(tmp_path / "s.npy").shape == (2, 28, 28)


# ---------------------------------------------------------------- options


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--n", "0"], "--n must be at least 1, received 0"),
        (["--n", "-3"], "--n must be at least 1, received -3"),
        (["--batch-size", "0"], "--batch-size must be at least 1, received 0"),
        (["--batch-size", "-1"], "--batch-size must be at least 1, received -1"),
        (["--seed", "-1"], "--seed must be at least 0, received -1"),
        (["--n", "ten"], "argument --n: invalid int value: 'ten'"),
        (["--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_nonsense_options_are_refused_in_one_line(tmp_path, capsys, good, argv, message):
    with pytest.raises(SystemExit) as info:
        main([str(good), "--out", str(tmp_path / "s.npy"), *argv])
    out, err = capsys.readouterr()
    assert info.value.code == EXIT_ERROR and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    assert list(tmp_path.iterdir()) == []


def refused_option(capsys, *argv) -> str:
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert info.value.code == EXIT_ERROR and out == "" and err.count("\n") == 1 and err.startswith("error: "), err
    return err


def test_nothing_to_do_is_refused(capsys, good):
    assert "nothing to do: give --out FILE.npy and/or --grid FILE.png" in refused_option(capsys, good)


def test_an_empty_name_is_refused_not_skipped(tmp_path, capsys, good):
    """An unset shell variable gives '': never read as "not given" (the grid alone written, or the
    checkpoint.npz of the current folder sampled)."""
    grid = tmp_path / "g.png"
    assert "error: --out: expected a file name, received ''" in refused_option(
        capsys, good, "--out", "", "--grid", grid
    )
    assert "error: --grid: expected a file name, received ' '" in refused_option(capsys, good, "--grid", " ")
    assert "error: checkpoint: expected a file name, received ''" in refused_option(capsys, "", "--grid", grid)
    assert list(tmp_path.iterdir()) == []


def test_folder_as_out_is_refused(tmp_path, capsys, good):
    (tmp_path / "dir").mkdir()
    err = refused_option(capsys, good, "--out", tmp_path / "dir")
    assert f"--out {tmp_path / 'dir'} is a folder; expected a file name (ending in .npy)" in err
    assert list((tmp_path / "dir").iterdir()) == []
    assert "--grid x/ is a folder" in refused_option(capsys, good, "--grid", "x/")


def test_grid_needs_a_png_name(tmp_path, capsys, good):
    assert "--grid g.jpg: expected a file name ending in .png, received 'g.jpg'" in refused_option(
        capsys, good, "--grid", "g.jpg"
    )
    same = tmp_path / "x.png"
    assert "--out and --grid name the same file" in refused_option(capsys, good, "--grid", same, "--out", same)


def test_out_below_a_file_is_refused_before_sampling(tmp_path, capsys, good, monkeypatch):
    monkeypatch.setattr(sampler, "sample", lambda *a, **k: pytest.fail("sampled before checking the outputs"))
    (tmp_path / "file").write_text("x")
    err = refused_option(capsys, good, "--out", tmp_path / "file" / "sub" / "s.npy")
    assert f"{tmp_path / 'file'} is a file, so no folder can be made there" in err
    err = refused_option(capsys, good, "--n", 2, "--grid", tmp_path / "file" / "g.png")
    assert "--grid" in err and "is a file" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder")
def test_read_only_folder_is_refused_before_sampling(tmp_path, capsys, good):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        assert "no permission to write in" in refused_option(capsys, good, "--out", folder / "s.npy")
    finally:
        folder.chmod(0o700)


def test_failed_write_keeps_the_earlier_file(tmp_path, capsys, good, monkeypatch):
    grid = tmp_path / "g.png"
    grid.write_bytes(b"earlier grid")

    def disk_full(images, path, nrow=8):
        Path(path).write_bytes(b"half a png")
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(sampler, "save_grid", disk_full)
    code, out, err = run_main(capsys, good, "--n", 2, "--out", tmp_path / "s.npy", "--grid", grid)
    assert code == EXIT_ERROR and out == f"wrote 2 images (28, 28) to {tmp_path / 's.npy'}\n"
    assert err == f"error: --grid {grid}: cannot write it: No space left on device\n"
    assert grid.read_bytes() == b"earlier grid"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.png", "s.npy"], "no temporary file left behind"


def test_symlink_target_is_replaced_and_the_link_kept(tmp_path, capsys, good):
    (tmp_path / "real.npy").write_bytes(b"old")
    (tmp_path / "link.npy").symlink_to(tmp_path / "real.npy")
    code, _, err = run_main(capsys, good, "--n", 2, "--out", tmp_path / "link.npy")
    assert code == 0, err
    assert (tmp_path / "link.npy").is_symlink() and np.load(tmp_path / "real.npy").shape == (2, 28, 28)


def test_fifo_is_written_through_not_replaced(tmp_path, capsys, good):
    """Renaming over a path that is not a regular file would replace it: as root, --out /dev/null would
    swap the device for a plain file. A FIFO stands in for the device here."""
    fifo = tmp_path / "pipe.npy"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    code, _, err = run_main(capsys, good, "--n", 2, "--out", fifo)
    reader.join(timeout=60)
    assert code == 0, err
    assert stat.S_ISFIFO(fifo.lstat().st_mode), "the FIFO itself must still be there"
    assert np.load(io.BytesIO(received[0])).shape == (2, 28, 28)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe.npy"]


def test_unwritable_location_found_only_while_writing(tmp_path, capsys, good):
    target = Path("/proc/tinygan-no-such-folder/s.npy")
    if not Path("/proc").is_dir():
        pytest.skip("no /proc here")
    err = refused(capsys, good, "--n", 2, "--out", target)
    assert err.startswith(f"error: --out {target}") and "\n" not in err


def test_ctrl_c_writes_nothing(tmp_path, capsys, good, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sampler, "sample", interrupted)
    refused(capsys, good, "--out", tmp_path / "s.npy", code=EXIT_INTERRUPTED)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(backend.gpu_unavailable_reason() is None, reason="a GPU is present")
def test_gpu_without_a_gpu_exits_with_the_no_gpu_code(tmp_path, capsys, good):
    err = refused(capsys, good, "--out", tmp_path / "s.npy", "--device", "gpu", code=EXIT_NO_GPU)
    assert "--device gpu needs a CUDA GPU" in err


# ---------------------------------------------------------------- checkpoints


def nan_in(key):
    def mutate(arrays):
        arrays[key] = arrays[key].copy()
        arrays[key].flat[[3, 17]] = np.nan
        arrays[key].flat[5] = np.inf

    return mutate


def raw_npz(path: Path, meta_json: str, **arrays) -> None:
    np.savez(path, __meta__=np.array(meta_json), **arrays)


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "no such checkpoint file"),
        ("empty folder", "checkpoint.npz: no such checkpoint file"),
        ("text", "not a readable tinygan checkpoint"),
        ("truncated", "not a readable tinygan checkpoint"),
        ("truncated compressed", "not a readable tinygan checkpoint"),
        ("plain npz", "not a tinygan checkpoint (no metadata record '__meta__')"),
        ("meta a list", "key '__meta__': expected a JSON object, received list"),
        ("no config", "key 'config': expected a JSON object, received NoneType"),
        ("bogus model", "key 'config': model: expected one of ['dcgan', 'mnist_dense'], received 'bogus'"),
        ("bogus range", "key 'config': image_range: expected one of ['01', 'tanh'], received 'bogus'"),
        ("bogus latent", "key 'config': g_options.latent_dim: expected an integer >= 1, received '100'"),
        ("bool latent", "key 'config': g_options.latent_dim: expected an integer >= 1, received True"),
        # fields the sampler itself does not read are still the run's schema: a record it refuses is no tinygan run
        ("bogus field", "key 'config': lr_g: expected a number in [0, 1], received 'fast'"),
        ("unknown field", "key 'config': unknown configuration keys ['colour']"),
        ("bogus label", "key 'config': real_label: expected [LOW, HIGH] with 0 <= LOW <= HIGH <= 1, received 5"),
        ("bogus option", "metadata key 'config.g_options': cannot rebuild the generator"),
        ("no G", "holds no generator weights (no 'G/...' keys)"),
        (
            "huge latent",
            "G/0.W: expected shape (1000000000000, units) for config.g_options.latent_dim 1000000000000, "
            "received (100, 256)",
        ),
        ("NaN", "key 'G/0.W': 3 of 25,600 values are NaN or infinite"),
        ("int", "key 'G/6.b': expected a floating-point array, received dtype int64"),
        ("complex", "key 'G/6.W': expected a floating-point array, received dtype complex64"),
        ("wrong shape", "does not match G: 0.W (G[0] Dense(100, 256)) expected shape (100, 256), received (100, 10)"),
        ("dcgan record", "does not match G: missing"),
    ],
)
def test_bad_checkpoints_are_refused_in_one_line(tmp_path, capsys, good, case, message):
    path = tmp_path / "checkpoint.npz"
    state = {f"G/{k}": v for k, v in build("mnist_dense", "G").state_dict().items()}
    meta = {"format": "tinygan-checkpoint", "version": 1, "config": CONFIG}
    if case == "missing":
        path = tmp_path / "nothing.npz"
    elif case == "empty folder":
        (tmp_path / "run").mkdir()
        path = tmp_path / "run"
    elif case == "text":
        path.write_text("hello")
    elif case == "truncated":
        path.write_bytes(good.read_bytes()[:100_000])
    elif case == "truncated compressed":
        np.savez_compressed(path, __meta__=np.array(json.dumps(meta)), **state)
        blob = path.read_bytes()
        path.write_bytes(blob[: len(blob) // 2])
    elif case == "plain npz":
        np.savez(path, x=np.zeros(3))
    elif case == "meta a list":
        raw_npz(path, "[1, 2]")
    elif case == "no config":
        write_checkpoint(path, meta={"epoch": 3})
    elif case == "bogus model":
        write_checkpoint(path, meta={"config": {**CONFIG, "model": "bogus"}})
    elif case == "bogus range":
        write_checkpoint(path, meta={"config": {**CONFIG, "image_range": "bogus"}})
    elif case == "bogus latent":
        write_checkpoint(path, meta={"config": {**CONFIG, "g_options": {"latent_dim": "100"}}})
    elif case == "bool latent":
        write_checkpoint(path, meta={"config": {**CONFIG, "g_options": {"latent_dim": True}}})
    elif case == "bogus field":
        write_checkpoint(path, meta={"config": {**CONFIG, "lr_g": "fast"}})
    elif case == "unknown field":
        write_checkpoint(path, meta={"config": {**CONFIG, "colour": "blue"}})
    elif case == "bogus label":
        write_checkpoint(path, meta={"config": {**CONFIG, "real_label": 5}})
    elif case == "bogus option":
        write_checkpoint(path, meta={"config": {**CONFIG, "g_options": {"colour": "blue"}}})
    elif case == "huge latent":
        write_checkpoint(path, meta={"config": {**CONFIG, "g_options": {"latent_dim": 10**12}}})
    elif case == "no G":
        save_checkpoint(path, {"D/0.W": np.zeros(3, np.float32)}, {"config": CONFIG})
    elif case == "NaN":
        write_checkpoint(path, nan_in("G/0.W"))
    elif case == "int":
        write_checkpoint(path, lambda a: a.update({"G/6.b": np.ones(a["G/6.b"].shape, np.int64)}))
    elif case == "complex":
        write_checkpoint(path, lambda a: a.update({"G/6.W": a["G/6.W"].astype(np.complex64)}))
    elif case == "wrong shape":
        write_checkpoint(path, lambda a: a.update({"G/0.W": a["G/0.W"][:, :10]}))
    elif case == "dcgan record":
        write_checkpoint(path, meta={"config": {**CONFIG, "model": "dcgan"}})
    out = tmp_path / "s.npy"
    err = refused(capsys, path, "--out", out, "--grid", tmp_path / "g.png")
    shown = path / "checkpoint.npz" if path.is_dir() else path
    assert err.startswith(f"error: {shown}"), err
    assert message in err, err
    assert not out.exists() and not (tmp_path / "g.png").exists()


def test_nan_weights_are_refused_by_the_library_too(tmp_path):
    path = write_checkpoint(tmp_path / "c.npz", nan_in("G/2.b"))
    with pytest.raises(CheckpointError, match=r"c\.npz: key 'G/2\.b': 3 of 512 values are NaN or infinite"):
        load_generator(path)
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        sample(path, 4)


def test_generator_that_overflows_is_refused(tmp_path, capsys):
    """Finite weights, but so large that the forward pass makes inf - inf: no NaN images are written."""

    def huge(arrays):
        for key in [k for k in arrays if k.endswith(".W")]:
            arrays[key] = arrays[key] * np.float32(1e30)

    path = write_checkpoint(tmp_path / "c.npz", huge)
    err = refused(capsys, path, "--n", 3, "--out", tmp_path / "s.npy")
    assert "the generator produced" in err and "NaN or infinite values" in err
    assert not (tmp_path / "s.npy").exists()


def test_sample_function_checks_its_arguments(good):
    for kwargs, name in (({"n": 0}, "n"), ({"n": 2, "batch_size": 0}, "batch_size"), ({"n": 2, "seed": -1}, "seed")):
        with pytest.raises(ValueError, match=rf"^{name}: expected an integer >= "):
            sample(good, **kwargs)


def test_zip_that_is_no_npz_is_refused(tmp_path, capsys):
    path = tmp_path / "c.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("__meta__.npy", b"not an npy header")
    err = refused(capsys, path, "--out", tmp_path / "s.npy")
    assert err.startswith(f"error: {path}: key '__meta__': unreadable header: "), err


def test_module_run_has_no_traceback(tmp_path):
    (tmp_path / "c.npz").write_bytes(b"PK\x03\x04 damaged")
    proc = subprocess.run(
        [sys.executable, "-m", "tinygan.sample", str(tmp_path / "c.npz"), "--out", str(tmp_path / "s.npy")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == EXIT_ERROR
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {tmp_path / 'c.npz'}: not a readable"), proc.stderr


def test_a_per_class_root_names_its_class_folders(tmp_path, capsys, good):
    root = tmp_path / "cifar_run"
    root.mkdir()
    (root / "classes.json").write_text('{"classes": ["airplane", "cat"]}')
    err = refused(capsys, root, "--out", tmp_path / "s.npy")
    assert (
        err == f"error: {root}: a per-class run (classes.json) holds one generator per class: give a class's "
        "folder (none trained yet)"
    )
    for name in ("airplane", "cat", "dog"):
        (root / name).mkdir()
        (root / name / "checkpoint.npz").write_bytes(good.read_bytes())
    err = refused(capsys, root, "--out", tmp_path / "s.npy")
    assert err.endswith(f"give a class's folder ({root / 'airplane'}, {root / 'cat'}, ...)"), err
    code, _, err = run_main(capsys, root / "cat", "--n", 2, "--out", tmp_path / "s.npy")
    assert code == 0, err
