"""The DiT's training batches: the object mask that weights the loss."""
import numpy as np
import pytest
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


@pytest.mark.parametrize("frames", [[], ["--full-frames"]])
def test_decoder_only_training_leaves_the_latent_space_exactly_as_it_was(tmp_path, monkeypatch, frames):
    """--decoder-only fine-tunes the VAE's decoder (on crops or whole frames); the encoder and the latent
    normalisation the DiT was trained on must come out bit-identical, and the decoder must actually change."""
    from safetensors.torch import load_file

    from engine.backends.toy import train
    monkeypatch.setattr(train, "eval_vae", lambda model, n=12: 0.0)          # the final evals are slow and not under test
    monkeypatch.setattr(train, "eval_vae_motion", lambda model, n=24: 0.0)
    init, out = train.ASSETS / "toy_vae.safetensors", tmp_path / "vae.safetensors"
    train.main(["vae", "--max-steps", "2", "--run", str(tmp_path / "run"), "--init", str(init), "--batch", "2",
                "--decoder-only", "--motion-weight", "2", "--lr", "1e-2", "--threads", "1", "--export", "--out", str(out),
                *frames])
    before, after = load_file(str(init)), load_file(str(out))
    assert before.keys() == after.keys()
    kept = [k for k in before if not k.startswith("decoder.")]
    assert any(k.startswith("encoder.") for k in kept) and {"shift", "scale"} <= set(kept)
    for k in kept:
        assert torch.equal(before[k], after[k]), k
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("decoder."))


def test_whole_frame_vae_batches_are_rendered_scenes_of_one_size_and_crops_are_32_px():
    from engine.backends.toy.train import SIZES, vae_batch
    x = vae_batch(np.random.default_rng(3), 4, None, pairs=3)                   # (B, 3, 7, H, W)
    assert x.shape[:3] == (4, 3, 7) and (x.shape[4], x.shape[3]) in SIZES
    assert float(x.min()) >= -1 and float(x.max()) <= 1
    assert not torch.equal(x[0], x[1])                                          # a scene each
    assert vae_batch(np.random.default_rng(3), 4, pairs=3).shape == (4, 3, 7, 32, 32)


def test_timestep_shift_moves_the_same_draws_toward_high_noise():
    from engine.backends.toy.train_dit import sample_t
    base = sample_t(np.random.default_rng(3), 4000)
    same = sample_t(np.random.default_rng(3), 4000, shift=1.0)
    high = sample_t(np.random.default_rng(3), 4000, shift=3.0)
    assert torch.equal(base, same)                                          # the default recipe is untouched
    assert (high >= base - 1e-6).all() and ((high > 0) & (high < 1)).all()
    assert high.mean() > base.mean() + 0.1
    assert (high[base.argsort()].diff() >= 0).all()                         # same draws, monotone map


def test_forced_image_to_video_keeps_the_first_frame_only_and_only_in_its_share():
    from engine.backends.toy.train_dit import force_i2v
    levels = torch.rand(2000, 5) * 0.5 + 0.5
    out = force_i2v(levels, 0.8, np.random.default_rng(0))
    forced = (out[:, 0] == 0) & (out[:, 1:] == 1).all(1)
    assert 0.75 < forced.float().mean() < 0.85
    assert torch.equal(out[~forced], levels[~forced])
    assert force_i2v(levels, 0.0, np.random.default_rng(0)) is levels


def test_pooled_text_reaches_only_the_frames_its_gate_opens():
    """Two segments: frames 0-1 see tokens 0-1, frames 2-3 tokens 2-4. The pooled vector of a frame
    changes with its own segment's tokens and not with the other's."""
    from engine.backends.toy.model import DiT, DiTConfig, pooled_text
    txt = torch.randn(1, 5, 8)
    gate = torch.zeros(1, 4, 5)
    gate[0, :2, :2] = 1
    gate[0, 2:, 2:] = 1
    p = pooled_text(txt, gate)                                              # (1, 4, 8)
    assert torch.allclose(p[0, 0], txt[0, :2].mean(0)) and torch.allclose(p[0, 3], txt[0, 2:].mean(0))
    txt2 = txt.clone()
    txt2[0, 3] = torch.linspace(-2, 2, 8)                                  # a new word (not a shift: LayerNorm hides one)
    q = pooled_text(txt2, gate)
    assert torch.equal(p[0, :2], q[0, :2]) and not torch.allclose(p[0, 2:], q[0, 2:])

    torch.manual_seed(0)
    cfg = DiTConfig(in_channels=4, patch=1, width=16, depth=1, heads=2, text_dim=8, pooled_text=True)
    model = DiT(cfg).eval()
    for blk in model.blocks:                                                 # wake adaLN-Zero so c matters
        torch.nn.init.normal_(blk.ada[-1].weight, std=0.5)
    torch.nn.init.normal_(model.patch_out.weight, std=0.5)
    torch.nn.init.normal_(model.text_pool[-1].weight, std=0.5)               # it starts at zero
    for blk in model.blocks:              # cut the paths between frames (self-attention) and the cross-attention
        torch.nn.init.zeros_(blk.cross.out.weight)
        torch.nn.init.zeros_(blk.attn.out.weight)
    x, t = torch.randn(1, 4, 4, 2, 2), torch.full((1, 4), 0.5)
    with torch.no_grad():
        a, b = model(x, t, txt, gate), model(x, t, txt2, gate)
    assert torch.equal(a[:, :, :2], b[:, :, :2]) and not torch.allclose(a[:, :, 2:], b[:, :, 2:])


def test_shipped_weights_without_the_pooled_path_still_load_and_the_recipe_default_is_off():
    from engine.backends.toy.backend import load_dit
    from engine.backends.toy.train_dit import DIT_CONFIG
    model = load_dit()
    assert not model.cfg.pooled_text and not hasattr(model, "text_pool")
    assert not DIT_CONFIG.pooled_text


def test_a_step_budget_sets_progress_and_keeps_weights(tmp_path):
    from engine.backends.toy.train import Run
    run = Run(str(tmp_path), minutes=1e-6, max_steps=10)
    run.step = 5
    assert run.progress == 0.5                                              # steps, not the (spent) minutes
    run.keep({"w": torch.ones(2)}, {"width": 8})
    saved = torch.load(tmp_path / "ckpt_000005.pt", weights_only=True)
    assert saved["step"] == 5 and saved["config"] == {"width": 8} and torch.equal(saved["model"]["w"], torch.ones(2))


def test_pooled_text_can_be_added_to_shipped_weights_and_starts_as_no_change(tmp_path):
    """--init from weights without the pooled path: every shipped tensor loads, and the new path is zero
    at the start, so the model's output is exactly the shipped model's."""
    import argparse

    from engine.backends.toy.backend import ASSETS, load_dit
    from engine.backends.toy.train import Run
    from engine.backends.toy.train_dit import build_models
    # the shipped DiT (the image-to-video model since session 25) reads a grounded layout: so does a run from it
    args = argparse.Namespace(patch=0, pooled_text=True, lr=1e-4, init=ASSETS / "toy_dit.safetensors", lora=0,
                              layout=True, grounded=True, silhouette=False, init_lora=None, layout_lr=1.0)
    cfg, model, _, ema = build_models(args, Run(str(tmp_path), 1), "cpu")
    assert cfg.pooled_text and hasattr(model, "text_pool")
    shipped = load_dit()
    x, t = torch.randn(1, 16, 3, 4, 4), torch.full((1, 3), 0.8)
    text, gate = torch.randn(1, 5, 384), torch.ones(1, 3, 5)
    with torch.no_grad():
        assert torch.allclose(model.eval()(x, t, text, gate), shipped(x, t, text, gate), atol=1e-5)
        assert torch.equal(ema.eval()(x, t, text, gate), model(x, t, text, gate))
    # --lora 8: the same start, and the optimiser holds the LoRA factors alone
    args = argparse.Namespace(patch=0, pooled_text=False, lr=1e-3, init=ASSETS / "toy_dit.safetensors", lora=8,
                              layout=True, grounded=True, silhouette=False, init_lora=None, layout_lr=1.0)
    _, lora, opt, lema = build_models(args, Run(str(tmp_path / "lora"), 1), "cpu")
    held = {id(p) for g in opt.param_groups for p in g["params"]}
    assert held == {id(p) for n, p in lora.named_parameters() if "lora_" in n or "layout_in" in n}
    with torch.no_grad():
        assert torch.allclose(lora.eval()(x, t, text, gate), shipped(x, t, text, gate), atol=1e-5)
        assert torch.equal(lema.eval()(x, t, text, gate), lora(x, t, text, gate))


def test_the_curriculum_first_stage_gives_one_object_one_caption_and_plain_generation():
    from engine.backends.toy.backend import MiniLM, load_vae, ASSETS
    from engine.backends.toy.train_dit import Pools, TextCache, render_sample
    rng = np.random.default_rng(3)
    for _ in range(40):
        clip, segs, _ = render_sample(rng, 64, 64, 8.0, 17, simple=True)
        assert len(segs) == 1 and segs[0][1:] == (0, 17)
        assert " and " not in segs[0][0] and " with " not in segs[0][0], segs[0][0]
    # the full mix does give storyboards and two objects, so the flag is what removes them
    full = [render_sample(rng, 64, 64, 8.0, 17) for _ in range(60)]
    assert any(len(s) > 1 for _, s, _ in full)
    text = TextCache(MiniLM())
    pools = Pools(np.random.default_rng(0), load_vae(ASSETS / "toy_vae.safetensors").eval(), text, toy_spec(), 2)
    _, levels, _, gate, _ = pools.batch(8, text(""), simple=True)
    assert torch.equal(levels, torch.ones_like(levels))                  # no extend, remix or blend patterns
    assert gate.shape[0] == 8
    # --bucket: every batch from the one bucket asked for (the probe's 64x64, 17 frames at 8 fps)
    from engine.backends.toy.train_dit import parse_buckets
    one = Pools(np.random.default_rng(1), pools.vae, text, toy_spec(), 1, parse_buckets("64x64x17@8"))
    for _ in range(3):
        x0, *_ = one.batch(2, text(""))
        assert x0.shape[2:] == (toy_spec().latent_frames(17), 64 // toy_spec().spatial_factor, 64 // toy_spec().spatial_factor)
    assert list(one.pools) == [(64, 64, 17)]
    # several buckets: each batch from one of them, and in a few batches more than one is used
    three = Pools(np.random.default_rng(2), pools.vae, text, toy_spec(), 1, parse_buckets("112x64x17@8, 64x64x17@8,64x112x9@6"))
    for _ in range(6):
        three.batch(2, text(""))
    assert set(three.pools) <= {(112, 64, 17), (64, 64, 17), (64, 112, 9)} and len(three.pools) >= 2


def test_the_curriculum_keeps_a_share_of_simple_batches_after_its_switch():
    """--simple-until N then --simple-share p: every batch simple before N, about p of them after, and none
    after with p = 0 (the step switch alone, as before)."""
    from engine.backends.toy.train_dit import simple_now
    rng = np.random.default_rng(0)
    assert all(simple_now(k, 100, 0.0, rng) for k in range(100))
    assert not any(simple_now(k, 100, 0.0, rng) for k in range(100, 1100))
    share = np.mean([simple_now(k, 0, 0.5, rng) for k in range(2000)])
    assert 0.45 < share < 0.55 and all(simple_now(k, 0, 1.0, rng) for k in range(100))


def test_keyframe_batches_are_single_frames_of_plain_generation_and_leave_other_batches_alone():
    """--keyframe-share: some batches are one pixel frame (one latent frame), all generated, with the object
    masked as in its clip; share 0 draws nothing, so a run without it is the baseline's stream."""
    from engine.backends.toy.backend import MiniLM, load_vae, ASSETS
    from engine.backends.toy.train_dit import Pools, TextCache, keyframe_now
    spec = toy_spec()
    frame = world.render(world.SceneSpec("gray", (world.ObjectSpec("circle", "red", "large", "left", 0.5, 0.5),)),
                         64, 64, 8, 1)                                           # (1, H, W, 3)
    assert object_mask(to_tensor(frame), spec).shape == (1, 64 // spec.spatial_factor, 64 // spec.spatial_factor)
    text = TextCache(MiniLM())
    pools = Pools(np.random.default_rng(0), load_vae(ASSETS / "toy_vae.safetensors").eval(), text, spec, 2)
    x0, levels, txt, gate, mask = pools.batch(16, text(""), keyframe=True)
    assert x0.shape[:3] == (16, spec.channels, 1) and levels.shape == (16, 1)
    assert torch.equal(levels, torch.ones_like(levels)) and gate.shape[:2] == (16, 1)
    assert mask.shape == (16, 1, *x0.shape[3:]) and mask.any()
    assert all(n == 1 for (_, _, n) in pools.pools)
    x1, *_ = pools.batch(8, text(""))
    assert x1.shape[2] > 1                                                       # clips as before
    rng = np.random.default_rng(5)
    state = rng.bit_generator.state
    assert not any(keyframe_now(0.0, rng) for _ in range(100)) and rng.bit_generator.state == state
    assert 0.2 < np.mean([keyframe_now(0.25, rng) for _ in range(2000)]) < 0.3


def test_a_lora_keyframe_run_exports_the_file_the_backend_loads_as_its_keyframe_model(tmp_path):
    """train dit --lora 8 --keyframe-share 0.5 --export: a few steps write a LoRA file (keyframe_frames 1 in its
    metadata) that ToyBackend.load merges into a keyframe model, beside an untouched DiT."""
    import shutil

    from engine.backends.toy.backend import ASSETS, KEY_NAME, ToyBackend
    from engine.backends.toy.train import main
    for name in ("toy_dit.safetensors", "toy_vae.safetensors"):
        shutil.copy(ASSETS / name, tmp_path / name)
    main(["dit", "--run", str(tmp_path / "run"), "--init", str(ASSETS / "toy_dit.safetensors"), "--max-steps", "3",
          "--batch", "2", "--probe-every", "0", "--eval-every", "1e6", "--lora", "8", "--keyframe-share", "0.5",
          "--grounded", "--lr", "1e-2", "--export", "--out", str(tmp_path / KEY_NAME)])   # as the shipped DiT reads
    b = ToyBackend.load(tmp_path)
    assert b.keyframe is not None and b.keyframe_frames == 1 and b.i2v is None
    base, key = b.dit.state_dict(), b.keyframe.state_dict()
    assert set(base) == set(key) and any(not torch.equal(base[k], key[k]) for k in base)
    # a LoRA: block linears only, and the layout input, which trains in full beside it
    assert all(torch.equal(base[k], key[k]) for k in base if not k.startswith(("blocks.", "layout_in.")))


def test_a_two_object_share_makes_fresh_scenes_hold_two_objects_and_share_0_draws_nothing():
    """--two-share: with share 1 every fresh clip's first caption names two objects (the world's mix gives
    one in about half); share 0 leaves the data stream exactly as it was."""
    from engine.backends.toy.train_dit import render_sample
    rng = np.random.default_rng(4)
    two = [render_sample(rng, 64, 64, 8.0, 9, two=True) for _ in range(40)]
    assert all(len(world.parse_caption(segs[0][0]).objects) == 2 for _, segs, _ in two)
    mix = [render_sample(rng, 64, 64, 8.0, 9) for _ in range(40)]
    assert any(len(world.parse_caption(segs[0][0]).objects) == 1 for _, segs, _ in mix)
    scene = world.sample_scene(np.random.default_rng(0), n_objects=1)
    assert len(scene.objects) == 1
    from engine.backends.toy.train_dit import Pools
    off, on = Pools(None, None, None, None), Pools(None, None, None, None, two_share=0.5, two_rng=np.random.default_rng(1))
    assert not any(off.two() for _ in range(50)) and 0.4 < np.mean([on.two() for _ in range(2000)]) < 0.6


def test_contrast_pairs_are_the_canonical_caption_and_its_swap_and_leave_the_data_stream_alone():
    """--contrast: a pool item under one caption carries, per attribute, the tokens of its scene's canonical
    caption and of that caption with the attribute swapped (engine.probe.swap); storyboards carry none; the
    latents drawn are the same as without it."""
    from engine.backends.toy.backend import ASSETS, MiniLM, load_vae
    from engine.backends.toy.train_dit import TextCache, encode_clips
    text, vae, spec = TextCache(MiniLM()), load_vae(ASSETS / "toy_vae.safetensors").eval(), toy_spec()
    plain = encode_clips(np.random.default_rng(6), vae, text, spec, 64, 64, 1, 3)
    paired = encode_clips(np.random.default_rng(6), vae, text, spec, 64, 64, 1, 3, contrast=("size", "shape"))
    assert all(torch.equal(a["z"], b["z"]) and a["pairs"] == [] for a, b in zip(plain, paired))
    for item in paired:
        assert len(item["pairs"]) == 2
        for true, swapped in item["pairs"]:
            assert true.shape[1] == swapped.shape[1] and not (true.shape == swapped.shape and torch.equal(true, swapped))
    cached = {id(v): k for k, v in text.cache.items()}
    for item in paired:                                 # 'a SIZE COLOUR SHAPE moving ...': one word changed each
        for (true, swapped), index in zip(item["pairs"], (1, 3)):
            a, b = cached[id(true)].split(), cached[id(swapped)].split()
            assert len(a) == len(b) and [i for i in range(len(a)) if a[i] != b[i]] == [index]
    clips = encode_clips(np.random.default_rng(6), vae, text, spec, 64, 64, 9, 12, contrast=("size",))
    assert {len(c["segs"]) > 1 for c in clips} == {True, False}                   # storyboards among them
    assert all(len(c["pairs"]) == (len(c["segs"]) == 1) for c in clips)           # a pair where one caption holds


def test_the_contrast_hinge_is_its_margin_for_a_model_that_ignores_text_and_zero_once_the_swap_costs_enough():
    from engine.backends.toy.train_dit import contrast_loss
    g = torch.Generator().manual_seed(0)
    x, target = torch.randn(4, 2, 1, 3, 3, generator=g), torch.randn(4, 2, 1, 3, 3, generator=g)
    tau, wgt = torch.full((4, 1), 0.7), torch.ones(4, 1, 3, 3)
    pairs = [(torch.zeros(3, 8), torch.ones(5, 8))] * 4                     # true caption: zeros; swapped: ones
    deaf = lambda x, t, text, gate: x * 0.5                                 # noqa: E731  (ignores its text)
    use = torch.tensor([True, True, False, True])
    torch.testing.assert_close(contrast_loss(deaf, x, tau, target, wgt, pairs, use, 0.2), torch.tensor(np.log1p(0.2)).float())
    reads = lambda x, t, text, gate: target[use] + 0.1 + 3 * text.mean((1, 2))[:, None, None, None, None]  # noqa: E731
    assert float(contrast_loss(reads, x, tau, target, wgt, pairs, use, 0.2)) == 0   # swapped loss 9.6, true 0.01
    assert float(contrast_loss(deaf, x, tau, target, wgt, pairs, torch.zeros(4, dtype=torch.bool), 0.2)) == 0


def test_the_pixel_loss_is_zero_for_the_true_velocity_and_reaches_the_model_but_not_the_decoder():
    from engine.backends.toy.backend import ASSETS, load_vae
    from engine.backends.toy.train_dit import pixel_loss
    vae = load_vae(ASSETS / "toy_vae.safetensors").requires_grad_(False)
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 16, 3, 2, 2, generator=g), torch.randn(2, 16, 3, 2, 2, generator=g)
    tau = torch.tensor([[0.0, 0.3, 0.3], [0.0, 0.4, 0.4]])                  # first latent frame given (i2v)
    x = (1 - tau[:, None, :, None, None]) * x0 + tau[:, None, :, None, None] * eps
    wgt = (tau > 0).float()[:, :, None, None].expand(2, 3, 2, 2)
    use = torch.tensor([True, True])
    assert float(pixel_loss(vae, x, tau, eps - x0, x0, wgt, use)) < 1e-9       # x - tau v is x0 itself
    v = (eps - x0).clone().requires_grad_(True)
    off = v + 0.3 * torch.randn(v.shape, generator=g)
    loss = pixel_loss(vae, x, tau, off, x0, wgt, use)
    loss.backward()
    assert loss.item() > 1e-4 and float(v.grad.abs().sum()) > 0
    assert all(p.grad is None for p in vae.parameters())
    assert pixel_loss(vae, x, tau, off, x0, wgt, torch.tensor([False, False])).item() == 0
    frozen_only = (eps - x0).clone()
    frozen_only[:, :, 0] += 1.0                                              # a wrong velocity where tau = 0
    assert float(pixel_loss(vae, x, tau, frozen_only, x0, wgt, use)) < 1e-9


def test_keyed_storyboards_hold_each_cut_to_a_new_scene_still_over_its_latent_frame_and_train_it_clean():
    """--cut-keys: every cut falls on a latent frame's first pixel frame; a cut to a new scene (layout.new_scene)
    holds its first frame over that latent frame (the keyframe the sampler draws there), a cut that goes on does
    not; encode_clips names those latent frames and key_cuts keeps them clean in the share asked for."""
    from engine.backends.toy.backend import ASSETS, MiniLM, load_vae
    from engine.backends.toy.layout import new_scene
    from engine.backends.toy.train_dit import TextCache, encode_clips, key_cuts, render_sample
    spec = toy_spec()
    tf, held, went_on = spec.temporal_factor, 0, 0
    rng = np.random.default_rng(4)
    for _ in range(80):
        clip, segs, _ = render_sample(rng, 64, 64, 8.0, 17, keyed=tf)
        for (before, _, _), (caption, a, _) in zip(segs, segs[1:]):
            assert spec.pixel_range(spec.latent_index(a))[0] == a
            still, new = all(np.array_equal(clip[a + i], clip[a]) for i in range(tf)), new_scene(before, caption)
            assert still or not new
            held, went_on = held + new, went_on + (not new and not still)
    assert held >= 5 and went_on >= 5
    vae, text = load_vae(ASSETS / "toy_vae.safetensors").eval(), TextCache(MiniLM())
    clips = encode_clips(np.random.default_rng(8), vae, text, spec, 64, 64, 17, 24, keyed=True)
    cut = [c for c in clips if c["cuts"]]
    assert cut and all(not c["cuts"] for c in encode_clips(np.random.default_rng(8), vae, text, spec, 64, 64, 17, 24))
    levels = torch.ones(len(cut), spec.latent_frames(17))
    kept = key_cuts(levels, cut, 1.0, np.random.default_rng(0))
    assert all(set(torch.nonzero(k == 0).flatten().tolist()) == set(c["cuts"]) for k, c in zip(kept, cut))
    assert torch.equal(key_cuts(levels, cut, 0.0, np.random.default_rng(0)), levels)
