"""The DiT's training batches: the object mask that weights the loss."""
import numpy as np
import torch

from engine.backends.toy import world
from engine.backends.toy.backend import toy_spec
from engine.backends.toy.train_dit import object_mask
from engine.video_io import to_tensor


def test_object_mask_marks_exactly_the_latent_cells_an_object_touches():
    spec, (w, h, n) = toy_spec(), (112, 64, 17)
    obj = world.ObjectSpec("square", "red", "large", "right", 0.3, 0.5)
    scene = world.SceneSpec("gray", (obj,))
    clip = world.render(scene, w, h, 8, n)                                  # (N, H, W, 3)
    mask = object_mask(to_tensor(clip), spec)                               # (F, h, w)
    assert mask.shape == (spec.latent_frames(n), h // spec.spatial_factor, w // spec.spatial_factor)

    bg = np.array(world.BACKGROUNDS["gray"])
    off = (np.abs(clip.astype(int) - bg).max(-1) > 0.1 * 127.5)            # (N, H, W) object pixels
    f, tf = spec.spatial_factor, spec.temporal_factor
    cells = off.reshape(n, h // f, f, w // f, f).any((2, 4))               # (N, h, w)
    want = np.concatenate([cells[:1], cells[1:].reshape(-1, tf, *cells.shape[1:]).any(1)])
    assert np.array_equal(mask.numpy().astype(bool), want)
    assert 0 < mask.mean() < 0.5                                           # an object, not the frame
    # the object moves right, so the mask does too
    cols = [np.nonzero(m.any(0))[0].mean() for m in mask.numpy()]
    assert cols[-1] > cols[0]

    empty = world.render(world.SceneSpec("gray", ()), w, h, 8, n)
    assert not object_mask(to_tensor(empty), spec).any()
