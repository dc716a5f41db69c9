"""The run's GIF: frames made beside the sample grids (save_grid's gif_frames) give the same file, byte for
byte, as frames read back from the PNGs; a run keeps its frames in memory and reads back only the others."""

import numpy as np
import pytest

from tinygan.train import GANConfig, GANTrainer
from tinygan.viz import save_gif, save_grid


@pytest.mark.parametrize("shape", [(64, 28, 28), (64, 32, 32, 3)], ids=["grey", "colour"])
def test_gif_from_kept_frames_equals_gif_from_the_pngs(tmp_path, shape):
    rng = np.random.default_rng(0)
    kept: dict = {}
    paths = [
        save_grid(rng.random(shape).astype(np.float32), tmp_path / f"epoch_{e:04d}.png", 8, kept) for e in range(5)
    ]
    assert set(kept) == {str(p) for p in paths}
    from_disk = save_gif(paths, tmp_path / "disk.gif")
    from_memory = save_gif(paths, tmp_path / "memory.gif", ready=kept)
    partly = save_gif(paths, tmp_path / "partly.gif", ready={str(paths[1]): kept[str(paths[1])]})
    assert from_disk.read_bytes() == from_memory.read_bytes() == partly.read_bytes()


def test_a_run_reads_back_only_frames_it_did_not_make(tmp_path, monkeypatch):
    from PIL import Image

    data = np.random.default_rng(0).random((100, 784)).astype(np.float32)
    config = GANConfig(epochs=3, batch_size=25, g_options={"seed": 0}, d_options={"seed": 1})
    trainer = GANTrainer(config, data, tmp_path / "run", progress=False)
    opened = []
    original = Image.open
    monkeypatch.setattr(Image, "open", lambda path, *a, **k: opened.append(str(path)) or original(path, *a, **k))
    trainer.run()
    assert len(trainer._gif_frames) == 3 and not [p for p in opened if p.endswith(".png")]
    monkeypatch.setattr(Image, "open", original)
    gif = (tmp_path / "run" / "samples.gif").read_bytes()
    frames = sorted((tmp_path / "run" / "samples").glob("epoch_*.png"))
    assert save_gif(frames, tmp_path / "again.gif").read_bytes() == gif  # the same as from the PNGs
    resumed = GANTrainer.resume(tmp_path / "run", data, {"epochs": 4}, progress=False)
    monkeypatch.setattr(Image, "open", lambda path, *a, **k: opened.append(str(path)) or original(path, *a, **k))
    resumed.run()
    assert sorted(p for p in opened if p.endswith(".png")) == [str(f) for f in frames]  # epochs before the resume
