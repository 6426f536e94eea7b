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


def test_decoder_only_training_leaves_the_latent_space_exactly_as_it_was(tmp_path, monkeypatch):
    """--decoder-only fine-tunes the VAE's decoder; the encoder and the latent normalisation the DiT
    was trained on must come out bit-identical, and the decoder must actually change."""
    from safetensors.torch import load_file

    from engine.backends.toy import train
    monkeypatch.setattr(train, "eval_vae", lambda model, n=12: 0.0)          # the final evals are slow and not under test
    monkeypatch.setattr(train, "eval_vae_motion", lambda model, n=24: 0.0)
    init, out = train.ASSETS / "toy_vae.safetensors", tmp_path / "vae.safetensors"
    train.main(["vae", "--minutes", "0.05", "--run", str(tmp_path / "run"), "--init", str(init), "--batch", "2",
                "--decoder-only", "--motion-weight", "2", "--lr", "1e-2", "--threads", "1", "--export", "--out", str(out)])
    before, after = load_file(str(init)), load_file(str(out))
    assert before.keys() == after.keys()
    kept = [k for k in before if not k.startswith("decoder.")]
    assert any(k.startswith("encoder.") for k in kept) and {"shift", "scale"} <= set(kept)
    for k in kept:
        assert torch.equal(before[k], after[k]), k
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("decoder."))
