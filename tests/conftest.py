import os

import numpy as np
import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def backend():
    """The reference backend: causal VAE with 2x temporal / 4x spatial factors and a tiny random DiT."""
    from engine.backends.reference import ReferenceBackend
    return ReferenceBackend()


def ramp_clip(n: int, w: int = 48, h: int = 32, seed: int = 0) -> np.ndarray:
    """(n, h, w, 3) uint8: frame k is a flat colour that encodes k, plus a square marking its frame index."""
    rng = np.random.default_rng(seed)
    base = rng.integers(30, 200, size=3)
    clip = np.zeros((n, h, w, 3), np.uint8)
    for k in range(n):
        clip[k] = (base + 4 * k) % 256
        x = (k * 3) % (w - 8)
        clip[k, 8:16, x:x + 8] = 250
    return clip


@pytest.fixture
def make_video(tmp_path):
    """Write a real mp4 and return its path."""
    from engine.video_io import write_video

    def _make(name="clip.mp4", n=24, fps=12, w=48, h=32, seed=0):
        return str(write_video(tmp_path / name, ramp_clip(n, w, h, seed), fps))
    return _make


@pytest.fixture
def make_image(tmp_path):
    from engine.video_io import write_image

    def _make(name="img.png", w=48, h=32, color=(200, 40, 40)):
        img = np.zeros((h, w, 3), np.uint8)
        img[:] = color
        img[h // 4: h // 2, w // 4: w // 2] = 255
        return str(write_image(tmp_path / name, img))
    return _make
