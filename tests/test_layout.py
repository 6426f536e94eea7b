"""The keyframe model's layout input: the maps, the planner that places a prompt's objects, the DiT's new input,
its training batches, its LoRA file, and the backend telling the keyframe pass one layout per variation."""
import copy

import numpy as np
import pytest
import torch

from engine.backends.toy import world
from engine.backends.toy.backend import toy_spec
from engine.backends.toy.layout import CHANNELS, blobs, place, prompt_layout, scene_layout
from engine.backends.toy.model import DiT, DiTConfig

TINY = DiTConfig(in_channels=16, patch=2, width=32, depth=2, heads=2, text_dim=384)


def test_each_object_gets_its_own_channel_peaking_on_the_cell_that_holds_its_rendered_centre():
    f = toy_spec().spatial_factor
    a = world.ObjectSpec("square", "red", "large", "right", 0.25, 0.5)
    b = world.ObjectSpec("circle", "blue", "small", "still", 0.8, 0.3)
    scene = world.SceneSpec("gray", (a, b))
    lay = scene_layout(scene, 112, 64, f)                                       # (K, h, w)
    assert lay.shape == (CHANNELS, 64 // f, 112 // f) and lay.max() <= 1
    frame = world.render(scene, 112, 64, 8, 1)[0].astype(int)                   # (H, W, 3)
    for k, obj in enumerate(scene.objects):
        ys, xs = np.nonzero((np.abs(frame - world.COLORS[obj.color]).sum(-1) < 30))
        peak = np.unravel_index(lay[k].argmax(), lay[k].shape)
        assert peak == (int(ys.mean()) // f, int(xs.mean()) // f)
    # the large object's blob is wider: size is in the layout, shape is not
    assert (lay[0] > 0.5).sum() > (lay[1] > 0.5).sum()
    one = scene_layout(world.SceneSpec("gray", (a,)), 112, 64, f)
    assert np.array_equal(one[0], lay[0]) and not one[1].any()                 # no second object: an empty channel
    assert not blobs([], 64, 64, f).any()


@pytest.mark.parametrize("seed", range(6))
def test_the_planner_keeps_what_a_prompt_says_and_places_objects_as_the_world_does(seed):
    rng = np.random.default_rng(seed)
    s = place("a small red triangle moving left and a big blue box going up against white", 112, 64, rng)
    assert s.background == "white" and [(o.color, o.shape, o.size, o.motion) for o in s.objects] == [
        ("red", "triangle", "small", "left"), ("blue", "square", "large", "up")]
    for o in s.objects:   # a moving object starts with a second of free travel ahead, inside the frame
        xlo, xhi, ylo, yhi = world._start_box(o.motion, *world._half_extents(o.size, (112, 64)))
        assert xlo <= o.x <= xhi and ylo <= o.y <= yhi
    assert world._apart(*s.objects, (112, 64), 4.0)
    loose = place("a ball", 64, 64, rng)                    # unnamed colour, size and motion: drawn from the world
    assert len(loose.objects) == 1 and loose.objects[0].shape == "circle" and loose.objects[0].color in world.COLORS


def test_the_planner_declines_what_the_world_cannot_hold_and_the_layout_is_then_empty():
    rng = np.random.default_rng(0)
    assert place("a photo of a cat on a sofa", 64, 64, rng) is None
    assert place("a red circle, a blue square and a green triangle", 64, 64, rng) is None
    assert place("a red circle and a red square", 64, 64, rng) is None             # one colour, two objects
    assert not prompt_layout("a photo of a cat", 64, 64, 8, 0).any()
    a, b = prompt_layout("a red ball", 64, 64, 8, 3), prompt_layout("a red ball", 64, 64, 8, 3)
    assert np.array_equal(a, b) and a[0].max() > 0.5 and not a[1].any()           # seeded
    assert not np.array_equal(a, prompt_layout("a red ball", 64, 64, 8, 4))


def test_a_dit_with_a_fresh_layout_input_is_the_dit_without_one_and_a_trained_one_reads_the_layout():
    torch.manual_seed(0)
    plain, laid = DiT(TINY), DiT(DiTConfig(**{**TINY.__dict__, "layout": 2}))
    for p in plain.parameters():   # a trained model: nothing zero, so a layout could show anywhere
        torch.nn.init.normal_(p, std=0.05)
    missing, unexpected = laid.load_state_dict(plain.state_dict(), strict=False)
    assert set(missing) == {"layout_in.weight", "layout_in.bias"} and not unexpected
    x, t = torch.randn(2, 16, 1, 8, 8), torch.full((2, 1), 0.9)
    text, gate = torch.randn(2, 5, 384), torch.ones(2, 1, 5)
    lay = torch.rand(2, 2, 1, 8, 8)
    with torch.no_grad():
        ref = plain(x, t, text, gate)
        assert torch.equal(laid(x, t, text, gate, layout=lay), ref)            # zero-initialised: no change
        torch.nn.init.normal_(laid.layout_in.weight, std=0.1)
        moved = laid(x, t, text, gate, layout=lay)
        assert (moved - ref).abs().max() > 1e-3
        assert torch.equal(laid(x, t, text, gate), laid(x, t, text, gate, layout=torch.zeros_like(lay)))
        assert not torch.allclose(laid(x, t, text, gate, layout=lay.flip(-1)), moved)


def test_a_track_layout_follows_the_rendered_object_through_every_latent_frame():
    from engine.backends.toy.layout import frame_times, track_layout
    spec, f, fps, n = toy_spec(), toy_spec().spatial_factor, 8, 17
    obj = world.ObjectSpec("circle", "green", "small", "right", 0.2, 0.4)
    scene = world.SceneSpec("black", (obj,))
    times = frame_times(spec, spec.latent_frames(n), fps)
    a, b = spec.pixel_range(1)
    assert times[0] == 0 and np.allclose(times[1], (a + b - 1) / 2 / fps)      # the mean of its pixel frames' times
    lay = track_layout(scene, 112, 64, f, times)                               # (K, F, h, w)
    assert lay.shape == (CHANNELS, spec.latent_frames(n), 64 // f, 112 // f) and not lay[1].any()
    clip = world.render(scene, 112, 64, fps, n).astype(int)                    # (N, H, W, 3)
    cols = []
    for k in range(lay.shape[1]):
        a, b = spec.pixel_range(k)
        ys, xs = np.nonzero((np.abs(clip[a:b] - world.COLORS["green"]).sum(-1) < 30).any(0))
        peak = np.unravel_index(lay[0, k].argmax(), lay[0, k].shape)
        assert abs(peak[1] - xs.mean() / f) <= 1 and abs(peak[0] - ys.mean() / f) <= 1
        cols.append(peak[1])
    assert cols[-1] > cols[0]                                                  # moving right


def test_training_batches_carry_each_clips_layout_and_a_share_is_dropped():
    """Keyframes and clips carry their objects' layout per latent frame, a channel per object the caption names
    (a storyboard's frames, their card's); Pools.layout zeroes a share."""
    from engine.backends.toy.backend import ASSETS, MiniLM, load_vae
    from engine.backends.toy.train_dit import Pools, TextCache, encode_clips
    spec, text = toy_spec(), TextCache(MiniLM())
    vae = load_vae(ASSETS / "toy_vae.safetensors").eval()
    frames = encode_clips(np.random.default_rng(3), vae, text, spec, 112, 64, 1, 4)
    clips = encode_clips(np.random.default_rng(5), vae, text, spec, 112, 64, 17, 12)
    captions = {id(v): k for k, v in text.cache.items()}
    stories = [c for c in clips if len(c["segs"]) > 1]
    assert stories and all(c["layout"] is not None for c in clips)
    checked = 0
    for item in stories:   # a storyboard: each frame inside one card laid out by that card's scene
        for f in range(item["z"].shape[1]):
            inside = [tokens for tokens, g in item["segs"] if g[f] == 1]
            if len(inside) == 1:
                checked += 1
                n = len(world.parse_caption(captions[id(inside[0])]).objects)
                assert [bool(item["layout"][k, f].any()) for k in range(CHANNELS)] == [k < n for k in range(CHANNELS)]
    assert checked > 5
    for item in frames + [c for c in clips if len(c["segs"]) == 1]:
        lay = item["layout"]
        assert lay.shape == (CHANNELS, *item["z"].shape[1:])
        query = world.parse_caption(captions[id(item["segs"][0][0])])
        assert [bool(lay[k].any()) for k in range(CHANNELS)] == [k < len(query.objects) for k in range(CHANNELS)]
        for k, o in enumerate(query.objects):   # a moving object's blob moves, a still one's stays
            peaks = [int(lay[k, f].argmax()) for f in range(lay.shape[1])]
            assert (len(set(peaks)) > 1) == (o.motion != "still") or lay.shape[1] == 1
    pools = Pools(np.random.default_rng(0), vae, text, spec, 2)
    pools.batch(64, text(""), keyframe=True)
    kept = pools.layout(0.0, np.random.default_rng(1))
    assert torch.equal(kept, torch.stack([p["layout"] for p in pools.picks]))
    dropped = pools.layout(0.5, np.random.default_rng(1))
    empty = (dropped.flatten(1) == 0).all(1)
    assert 0 < empty.float().mean() < 1 and torch.equal(dropped[~empty], kept[~empty])



def test_a_grounded_layout_says_each_blobs_colour_and_shape_where_that_object_is_and_nowhere_else():
    from engine.backends.toy.layout import ATTRIBUTES, GROUNDED
    f = toy_spec().spatial_factor
    a = world.ObjectSpec("square", "red", "large", "right", 0.25, 0.5)
    b = world.ObjectSpec("circle", "blue", "small", "still", 0.8, 0.3)
    scene = world.SceneSpec("gray", (a, b))
    plain, lay = scene_layout(scene, 112, 64, f), scene_layout(scene, 112, 64, f, channels=GROUNDED)
    assert lay.shape == (GROUNDED, 64 // f, 112 // f) and np.array_equal(lay[:CHANNELS], plain)
    chan = {name: lay[CHANNELS + i] for i, name in enumerate(ATTRIBUTES)}
    for k, (obj, other) in enumerate(((a, b), (b, a))):
        at, away = np.unravel_index(plain[k].argmax(), plain[k].shape), np.unravel_index(plain[1 - k].argmax(), plain[k].shape)
        for name in (obj.color, obj.shape):
            assert chan[name][at] == plain[k][at] and chan[name][away] < 0.05   # this object's blob, not the other's
    assert not any(chan[name].any() for name in ATTRIBUTES if name not in ("red", "blue", "square", "circle"))
    twins = scene_layout(world.SceneSpec("gray", (a, world.ObjectSpec("square", "blue", "small", "still", 0.8, 0.3))),
                         112, 64, f, channels=GROUNDED)   # two squares: one channel holds both blobs, each whole
    assert np.allclose(twins[CHANNELS + ATTRIBUTES.index("square")], plain.max(0))
    with pytest.raises(ValueError, match="channels"):
        blobs([(10, 10, 5)], 64, 64, f, channels=3)


def test_a_silhouette_layout_holds_each_objects_share_of_each_latent_cell_as_the_world_draws_it():
    """SILHOUETTE: the grounded layout, then per object the share of each latent cell it covers: the object's own
    pixels in the rendered frame, pooled per cell (so a square's corners differ from a circle's)."""
    from engine.backends.toy.layout import GROUNDED, SILHOUETTE
    f = toy_spec().spatial_factor
    for shape in world.SHAPES:
        obj = world.ObjectSpec(shape, "red", "large", "right", 0.31, 0.47)
        scene = world.SceneSpec("white", (obj,))
        lay = scene_layout(scene, 112, 64, f, channels=SILHOUETTE)
        assert lay.shape == (SILHOUETTE, 64 // f, 112 // f)
        assert np.array_equal(lay[:GROUNDED], scene_layout(scene, 112, 64, f, channels=GROUNDED))
        frame = world.render(scene, 112, 64, 8.0, 1)[0].astype(np.float32)
        bg, red = world.BACKGROUNDS["white"][1], world.COLORS["red"][1]
        alpha = (bg - frame[..., 1]) / (bg - red)                            # red on white: green falls
        pooled = alpha.reshape(64 // f, f, 112 // f, f).mean((1, 3))
        assert np.abs(lay[GROUNDED] - pooled).max() < 0.01 and not lay[GROUNDED + 1].any()
        side = world.object_side(obj, 112, 64)
        area = {"square": 1.0, "circle": np.pi / 4, "triangle": 0.5}[shape] * side * side / f ** 2
        assert abs(lay[GROUNDED].sum() - area) < 0.05 * area, shape


@pytest.mark.parametrize("narrow, wide", [("CHANNELS", "GROUNDED"), ("GROUNDED", "SILHOUETTE")])
def test_a_plain_layout_model_goes_on_grounded_unchanged_whatever_the_new_channels_say(tmp_path, narrow, wide):
    """fit_layout (train --init) and load_lora (train --init-lora) widen a layout input with zero columns, so a
    grounded (or silhouette) run starts as the plain (or grounded) model it continues."""
    from engine.backends.toy import layout
    from engine.backends.toy.adapter import load_lora, lora_model, lora_tensors
    from engine.backends.toy.backend import write_weights
    from engine.backends.toy.model import fit_layout
    small, big = getattr(layout, narrow), getattr(layout, wide)
    torch.manual_seed(2)
    plain = DiT(DiTConfig(**{**TINY.__dict__, "layout": small}))
    for p in plain.parameters():
        torch.nn.init.normal_(p, std=0.05)
    gcfg = DiTConfig(**{**TINY.__dict__, "layout": big})
    x, t, txt, gate = torch.randn(2, 16, 1, 8, 8), torch.full((2, 1), 0.9), torch.randn(2, 4, 384), torch.ones(2, 1, 4)
    lay = torch.rand(2, small, 1, 8, 8)
    told = torch.cat([lay, torch.rand(2, big - small, 1, 8, 8)], 1)
    grounded = DiT(gcfg)
    grounded.load_state_dict(fit_layout(plain.state_dict(), gcfg))
    lora = lora_model(copy.deepcopy(plain), 4)   # peft wraps in place
    for p in lora.parameters():
        if p.requires_grad:
            torch.nn.init.normal_(p, std=0.05)
    write_weights(*lora_tensors(lora), tmp_path / "plain.safetensors")
    widened = lora_model(copy.deepcopy(grounded), 4)
    load_lora(widened, tmp_path / "plain.safetensors")
    with torch.no_grad():
        torch.testing.assert_close(grounded(x, t, txt, gate, layout=told), plain(x, t, txt, gate, layout=lay))
        torch.testing.assert_close(widened(x, t, txt, gate, layout=told), lora(x, t, txt, gate, layout=lay),
                                   atol=2e-3, rtol=2e-3)   # fp16 file
        torch.nn.init.normal_(widened.model.layout_in.weight, std=0.1)   # once trained, the new channels count
        assert not torch.allclose(widened(x, t, txt, gate, layout=told), widened(x, t, txt, gate, layout=told.flip(1)))


def test_training_clips_carry_a_grounded_layout_when_asked_and_none_in_a_run_without_one():
    from engine.backends.toy.backend import ASSETS, MiniLM, load_vae
    from engine.backends.toy.layout import ATTRIBUTES, GROUNDED
    from engine.backends.toy.train_dit import TextCache, encode_clips
    spec, text = toy_spec(), TextCache(MiniLM())
    vae = load_vae(ASSETS / "toy_vae.safetensors").eval()
    grounded = encode_clips(np.random.default_rng(3), vae, text, spec, 64, 64, 1, 4, layout=GROUNDED)
    none = encode_clips(np.random.default_rng(3), vae, text, spec, 64, 64, 1, 4, layout=0)
    captions = {id(v): k for k, v in text.cache.items()}
    for g, n in zip(grounded, none):
        assert torch.equal(g["z"], n["z"]) and n["layout"] is None      # the same data stream, no layout made
        query = world.parse_caption(captions[id(g["segs"][0][0])])
        named = {a for o in query.objects for a in (o.color, o.shape)}
        lit = {a for i, a in enumerate(ATTRIBUTES) if g["layout"][CHANNELS + i].any()}
        assert g["layout"].shape[0] == GROUNDED and lit == named

@pytest.fixture(scope="module")
def toy_parts():
    from engine.backends.toy.backend import ASSETS, MiniLM, load_vae
    return load_vae(ASSETS / "toy_vae.safetensors"), MiniLM()


def spied(cfg: DiTConfig, seen: list) -> DiT:
    """A tiny DiT that records the layout each call is told (None: none)."""
    torch.manual_seed(0)
    model = DiT(cfg).eval()
    forward = model.forward
    model.forward = lambda x, t, text, gate, layout=None: (seen.append(layout), forward(x, t, text, gate, layout))[1]
    return model


def test_text_to_video_tells_the_keyframe_pass_a_planned_layout_per_variation_and_a_remix_none(toy_parts, make_video):
    """engine.api through ToyBackend: the keyframe model gets, in its cond rows, the layout the planner draws for
    its caption with the variation's seed, and none in its uncond rows; a light remix redraws its keyframe from
    the source with none, a strong one with one; a keyframe model without a layout input is called as before."""
    from engine import ops
    from engine.api import Settings, generate_latents
    from engine.backends.toy.backend import ToyBackend
    vae, text = toy_parts
    seen, plain_seen = [], []
    key = spied(DiTConfig(**{**TINY.__dict__, "layout": CHANNELS}), seen)
    b = ToyBackend(vae, spied(TINY, plain_seen), text, keyframe=key, i2v=DiT(TINY).eval(), keyframe_frames=1)
    prompt = "a large red square moving right on a black background"
    tl = ops.t2v(prompt, 1.0, aspect="16:9", resolution=64, fps=8, seed=11, variations=2)
    generate_latents(tl, b, Settings(steps=2, guidance=4.0))
    assert len(seen) == 2                                                        # the keyframe pass's two steps
    want = torch.stack([torch.from_numpy(prompt_layout(prompt, 112, 64, 8, 11 + k)) for k in range(2)])[:, :, None]
    for lay in seen:
        assert lay.shape == (4, CHANNELS, 1, 8, 14)                              # cond rows, then uncond rows
        assert torch.equal(lay[:2], want) and not lay[2:].any()
    assert not torch.equal(want[0], want[1])                                     # each variation its own place
    seen.clear()
    generate_latents(tl, b, Settings(steps=2, guidance=1.0))                    # unguided: cond rows alone
    assert len(seen) == 2 and all(torch.equal(lay, want) for lay in seen)
    src = make_video(w=112, h=64, n=8, fps=8)
    for amount, told in ((0.3, False), (b.layout_from, True), (0.9, True)):
        seen.clear()
        generate_latents(ops.remix(src, prompt, amount, resolution=64, fps=8, seed=3), b, Settings(steps=2))
        assert seen and all((lay is not None and bool(lay[:1].any())) == told for lay in seen), amount
    b.keyframe = spied(TINY, plain_seen)
    plain_seen.clear()
    generate_latents(tl, b, Settings(steps=2, guidance=4.0))
    assert plain_seen and all(lay is None for lay in plain_seen)


def test_a_layout_lora_round_trips_through_its_file_with_the_layout_input_stored_whole(tmp_path):
    """lora_tensors stores the trained layout input in full beside the LoRA factors; load_adapter rebuilds,
    on the plain base, the model the LoRA run trained (same velocity, layout and all)."""
    from engine.backends.toy.adapter import load_adapter, lora_model, lora_tensors
    from engine.backends.toy.backend import write_weights
    torch.manual_seed(1)
    base = DiT(TINY).eval()
    laid = DiT(DiTConfig(**{**TINY.__dict__, "layout": CHANNELS}))
    laid.load_state_dict(base.state_dict(), strict=False)
    lora = lora_model(laid, 4)                           # the layout input trains in full beside the factors
    for name, p in lora.named_parameters():   # as if trained
        if p.requires_grad:
            torch.nn.init.normal_(p, std=0.05)
    tensors, meta = lora_tensors(lora)
    assert {"full.layout_in.weight", "full.layout_in.bias"} <= set(tensors)
    write_weights(tensors, meta, tmp_path / "key.safetensors")
    loaded = load_adapter(base, tmp_path / "key.safetensors")
    assert loaded.cfg.layout == CHANNELS and base.cfg.layout == 0
    x, t, txt, gate = torch.randn(1, 16, 1, 8, 8), torch.full((1, 1), 0.8), torch.randn(1, 4, 384), torch.ones(1, 1, 4)
    lay = torch.rand(1, CHANNELS, 1, 8, 8)
    with torch.no_grad():
        want = lora.merge_and_unload()(x, t, txt, gate, layout=lay)
        torch.testing.assert_close(loaded(x, t, txt, gate, layout=lay), want, atol=2e-3, rtol=2e-3)   # fp16 file


@pytest.fixture(scope="module")
def key_lora(tmp_path_factory):
    """A keyframe LoRA of the shipped DiT with a grounded layout input, as sessions 22-24 shipped one (the shipped
    keyframe model is a model of its own since session 25): one exported training step."""
    from engine.backends.toy.backend import ASSETS, KEY_NAME
    from engine.backends.toy.train import main
    import shutil
    folder = tmp_path_factory.mktemp("key_lora")
    shutil.copy(ASSETS / "toy_dit.safetensors", folder / "toy_dit.safetensors")   # the DiT a LoRA file sits beside
    main(["dit", "--run", str(folder / "run"), "--init", str(ASSETS / "toy_dit.safetensors"), "--max-steps", "1",
          "--batch", "2", "--probe-every", "0", "--eval-every", "1e6", "--lora", "8", "--keyframe-share", "1.0",
          "--layout", "--grounded", "--layout-lr", "10", "--lr", "1e-2", "--export", "--out", str(folder / KEY_NAME)])
    return folder / KEY_NAME


def test_a_layout_run_from_a_keyframe_lora_starts_as_that_model_and_trains_the_layout_input(tmp_path, key_lora):
    """train dit --lora 8 --init-lora <a keyframe LoRA file> --layout: at step 0 the model is that file's keyframe
    model (its layout input too); the optimiser holds the LoRA factors and the layout input."""
    import argparse

    from engine.backends.toy.backend import ASSETS, load_dit, load_model
    from engine.backends.toy.train import Run
    from engine.backends.toy.layout import GROUNDED, SILHOUETTE
    from engine.backends.toy.train_dit import build_models
    shipped = load_model(load_dit(), key_lora)
    args = argparse.Namespace(patch=0, pooled_text=False, lr=1e-3, init=ASSETS / "toy_dit.safetensors", lora=8,
                              layout=True, grounded=shipped.cfg.layout >= GROUNDED,
                              silhouette=shipped.cfg.layout == SILHOUETTE, init_lora=key_lora, layout_lr=10.0)
    cfg, model, opt, ema = build_models(args, Run(str(tmp_path), 1), "cpu")
    held = {id(p) for g in opt.param_groups for p in g["params"]}
    assert cfg.layout == (shipped.cfg.layout or CHANNELS) and held == {
        id(p) for n, p in model.named_parameters() if "lora_" in n or "layout_in" in n}
    x, t = torch.randn(2, 16, 1, 8, 14), torch.full((2, 1), 0.9)
    text, gate = torch.randn(2, 5, 384), torch.ones(2, 1, 5)
    lay = torch.rand(2, cfg.layout, 1, 8, 14)
    told = {"layout": lay} if shipped.cfg.layout else {}   # a shipped model without the input ignores it
    with torch.no_grad():
        want = shipped(x, t, text, gate, **told)
        torch.testing.assert_close(model.eval()(x, t, text, gate, layout=lay), want, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ema.eval()(x, t, text, gate, layout=lay), want, atol=1e-5, rtol=1e-5)


def test_a_layout_keyframe_run_exports_a_file_the_backend_loads_and_samples_with_layouts(tmp_path, key_lora):
    """train dit --lora 8 --layout --init-lora ... --export: a few steps write a keyframe LoRA with the layout input
    inside; ToyBackend.load merges it into a keyframe model that reads layouts, and text-to-video plans one.
    The adapter CLI stores the run's checkpoint the same way."""
    import shutil

    from engine import ops, plan as plan_mod
    from engine.backends.toy.adapter import main as adapter_main
    from engine.backends.toy.backend import ASSETS, KEY_NAME, ToyBackend
    from engine.backends.toy.layout import GROUNDED
    from engine.backends.toy.train import main
    grounded = True                                                # key_lora's layout: the run's too
    for name in ("toy_dit.safetensors", "toy_vae.safetensors"):
        shutil.copy(ASSETS / name, tmp_path / name)
    main(["dit", "--run", str(tmp_path / "run"), "--init", str(ASSETS / "toy_dit.safetensors"), "--max-steps", "3",
          "--batch", "2", "--probe-every", "0", "--eval-every", "1e6", "--lora", "8", "--keyframe-share", "1.0",
          "--init-lora", str(key_lora), "--layout", "--layout-lr", "10", "--keep-every", "3",
          "--lr", "1e-2", "--export", "--out", str(tmp_path / KEY_NAME)] + ["--grounded"] * grounded)
    b = ToyBackend.load(tmp_path)
    assert b.keyframe.cfg.layout == (GROUNDED if grounded else CHANNELS) and b.keyframe.layout_in.weight.abs().max() > 0 and b.keyframe_frames == 1
    tl = ops.t2v("a small red ball moving left", 1.0, resolution=64, fps=8, seed=2)
    assert b.keyframe_denoiser(plan_mod.compile(tl, b), 2) != b.denoise_keyframe
    adapter_main([str(tmp_path / "run" / "ckpt_000003.pt"), "--base", str(tmp_path / "toy_dit.safetensors"),
                  "--out", str(tmp_path / "again.safetensors"), "--keyframe-frames", "1"])
    from engine.backends.toy.adapter import load_adapter
    again = load_adapter(b.dit, tmp_path / "again.safetensors")
    assert torch.equal(again.layout_in.weight, b.keyframe.layout_in.weight)   # both from the run's EMA weights


def test_the_image_to_video_pass_follows_the_keyframes_planned_paths_and_a_given_first_frame_gets_none(toy_parts,
                                                                                                        make_image):
    """With an image-to-video model that reads layouts, the second pass is told, per variation, the layout along
    the same planned paths whose first frame the keyframe pass was told; image-to-video from a given image none."""
    from engine import ops
    from engine.api import Settings, generate_latents
    from engine.backends.toy.backend import ToyBackend
    from engine.backends.toy.layout import frame_times
    vae, text = toy_parts
    key_seen, i2v_seen = [], []
    laid = DiTConfig(**{**TINY.__dict__, "layout": CHANNELS})
    b = ToyBackend(vae, DiT(TINY).eval(), text, keyframe=spied(laid, key_seen), i2v=spied(laid, i2v_seen),
                   keyframe_frames=1)
    prompt = "a small blue circle moving right and a large red triangle staying still"
    tl = ops.t2v(prompt, 1.0, aspect="16:9", resolution=64, fps=8, seed=4, variations=2)
    generate_latents(tl, b, Settings(steps=4, guidance=4.0))
    F_ = b.spec.latent_frames(8 + 1)
    want = torch.stack([torch.from_numpy(prompt_layout(prompt, 112, 64, 8, 4 + k, CHANNELS,
                                                       frame_times(b.spec, F_, 8))) for k in range(2)])
    assert want.shape == (2, CHANNELS, F_, 8, 14) and want[:, 1].any()            # two objects, two channels
    assert all(torch.equal(lay[:2], want[:, :, :1]) for lay in key_seen)
    # 3 of 4 steps: the second pass refines the keyframe's guide from guide_level (ToyBackend.guide)
    assert len(i2v_seen) == 3 and all(torch.equal(lay[:2], want) for lay in i2v_seen)
    assert {len(lay) for lay in i2v_seen} == {4, 2}                              # unguided below the floor
    i2v_seen.clear()
    generate_latents(ops.i2v(make_image(w=112, h=64), prompt, duration_s=1.0, resolution=64, fps=8, seed=4), b,
                     Settings(steps=2))
    assert i2v_seen and all(lay is None for lay in i2v_seen)


def test_a_fine_tune_with_a_layout_input_is_stored_by_svd_with_the_input_whole():
    """adapter.extract of a DiT that gained a layout input: the input stored whole, the block deltas by SVD;
    apply under the file's config rebuilds it (here a rank-2 delta, so up to fp16)."""
    from engine.backends.toy.adapter import apply, extract
    torch.manual_seed(2)
    base = DiT(TINY).eval()
    tuned = DiT(DiTConfig(**{**TINY.__dict__, "layout": CHANNELS})).eval()
    tuned.load_state_dict(base.state_dict(), strict=False)
    with torch.no_grad():
        torch.nn.init.normal_(tuned.layout_in.weight, std=0.1)
        lin = tuned.blocks[0].mlp[0]
        lin.weight += torch.randn(lin.out_features, 2) @ torch.randn(2, lin.in_features) * 0.05
    tensors, meta = extract(base, tuned)
    assert "full.layout_in.weight" in tensors and "full.blocks.0.mlp.0.weight" not in tensors
    rebuilt = apply(base, tensors, tuned.cfg)
    for k, v in tuned.state_dict().items():
        torch.testing.assert_close(rebuilt.state_dict()[k], v, atol=2e-3, rtol=2e-3)


def test_a_lora_file_loads_as_weights_merged_into_the_dit_beside_it(key_lora):
    """probe.load_weights (train --init, probe, adapter) reads a LoRA file as the model the backend samples with
    (merged into the DiT beside it), and the shipped keyframe file, a model of its own, whole, as the backend does."""
    from engine.backends.toy.backend import ASSETS, KEY_NAME, ToyBackend, load_dit, load_model
    from engine.probe import load_weights
    b = ToyBackend.load()
    for path, want in ((ASSETS / KEY_NAME, b.keyframe), (key_lora, load_model(load_dit(), key_lora))):
        m = load_weights(path)
        assert m.cfg == want.cfg and all(torch.equal(v, want.state_dict()[k]) for k, v in m.state_dict().items())


def test_a_storyboard_keyframe_is_placed_from_its_first_card_and_its_clip_only_where_stories_are_planned(toy_parts):
    """The keyframe is placed from a storyboard's first card; its image-to-video pass is told the cards' scenes
    where plan_stories is set (the shipped default) and none otherwise."""
    from engine import plan as plan_mod
    from engine.backends.toy.backend import ToyBackend
    from engine.timeline import TextCard, Timeline
    vae, text = toy_parts
    laid = DiTConfig(**{**TINY.__dict__, "layout": CHANNELS})
    b = ToyBackend(vae, DiT(TINY).eval(), text, keyframe=DiT(laid).eval(), i2v=DiT(laid).eval(), keyframe_frames=1)
    cards = [TextCard(0, 1, "a red ball moving left"), TextCard(1, 2, "a blue box moving up")]
    story = plan_mod.compile(Timeline(duration_s=2, resolution=64, fps=8, seed=1, cards=cards), b)
    assert ToyBackend.plan_stories and b.i2v_denoiser(story, 1) != b.denoise_i2v
    b.plan_stories = False
    assert b.keyframe_denoiser(story, 1) != b.denoise_keyframe and b.i2v_denoiser(story, 1) == b.denoise_i2v
    single = plan_mod.compile(Timeline(duration_s=2, resolution=64, fps=8, seed=1, prompt=cards[0].text), b)
    assert b.i2v_denoiser(single, 1) != b.denoise_i2v


def test_a_storyboards_clip_is_told_each_cards_scene_where_its_model_was_trained_on_them(toy_parts):
    """plan_stories: the image-to-video pass is told, frame by frame, the scene of the card the frame shows: the
    first card's where the keyframe pass was told it, the second's after the cut; a card outside the world none."""
    from engine.api import Settings, generate_latents
    from engine.backends.toy.backend import ToyBackend
    from engine.backends.toy.layout import ATTRIBUTES, GROUNDED
    from engine.timeline import TextCard, Timeline
    vae, text = toy_parts
    grounded = DiTConfig(**{**TINY.__dict__, "layout": GROUNDED})
    key_seen, seen = [], []
    b = ToyBackend(vae, DiT(TINY).eval(), text, keyframe=spied(grounded, key_seen), i2v=spied(grounded, seen),
                   keyframe_frames=1)
    b.plan_stories = True
    red, blue = (CHANNELS + ATTRIBUTES.index(c) for c in ("red", "blue"))
    cards = [TextCard(0, 1, "a red ball moving left"), TextCard(1, 2, "a blue box moving up"),
             TextCard(2, 3, "a photo of a cat")]
    tl = Timeline(duration_s=3, resolution=64, fps=8, seed=1, cards=cards)
    generate_latents(tl, b, Settings(steps=2, guidance=1.0))
    assert seen and key_seen
    lay = seen[0][0]                                                             # (K, F, h, w)
    assert all(torch.equal(s[0], lay) for s in seen) and torch.equal(lay[:, :1], key_seen[0][0])
    from engine.backends.toy.layout import frame_times
    shows = [min(int(t), 2) for t in frame_times(toy_spec(), lay.shape[1], 8)]  # the card each frame shows
    for f, card in enumerate(shows):
        assert bool(lay[red, f].any()) == (card == 0) and bool(lay[blue, f].any()) == (card == 1), f
        assert lay[:, f].any() == (card < 2)                                     # outside the world: nothing
    b.plan_stories = False
    seen.clear()
    generate_latents(tl, b, Settings(steps=2, guidance=1.0))
    assert seen and all(s is None for s in seen)


def test_a_storyboards_cut_to_a_new_scene_is_drawn_as_a_keyframe_told_that_cards_layout(toy_parts):
    """key_cuts: the first frame of a card that does not name the scene before it is a cut; the keyframe model
    draws it alone, told the layout the image-to-video pass has at that frame; a card that goes on is no cut."""
    from engine import plan as plan_mod
    from engine.api import Settings, generate_latents
    from engine.backends.toy.backend import ToyBackend
    from engine.backends.toy.layout import ATTRIBUTES, GROUNDED
    from engine.timeline import TextCard, Timeline
    vae, text = toy_parts
    grounded = DiTConfig(**{**TINY.__dict__, "layout": GROUNDED})
    key_seen, seen = [], []
    b = ToyBackend(vae, DiT(TINY).eval(), text, keyframe=spied(grounded, key_seen), i2v=spied(grounded, seen),
                   keyframe_frames=1)
    cards = [TextCard(0, 1, "a red ball moving left"), TextCard(1, 2, "a red ball moving up"),
             TextCard(2, 3, "a blue box moving up")]
    tl = Timeline(duration_s=3, resolution=64, fps=8, seed=1, cards=cards)
    plan = plan_mod.compile(tl, b)
    b.key_cuts = False
    assert b.cuts(plan) == []
    b.key_cuts = True
    spec = toy_spec()
    third = next(f for f in range(plan.grid.latent_frames) if spec.pixel_range(f)[0] >= 16)   # all its frames 2 s on
    assert spec.pixel_range(third - 1) == (15, 17)        # the cut at pixel frame 16 falls inside the frame before
    assert b.cuts(plan) == [(third - 1, third)]
    odd = plan_mod.compile(tl.replace(cards=[cards[0], TextCard(1, 17 / 8, cards[1].text),
                                             TextCard(17 / 8, 3, cards[2].text)]), b)
    assert b.cuts(odd) == [(third, third)]                           # a cut on a frame's first pixel frame: that frame
    generate_latents(tl, b, Settings(steps=2, guidance=1.0))
    assert len(key_seen) == 4 and len(seen) == 2                     # two steps for the keyframe, two for the cut
    lay, red, blue = seen[0][0], CHANNELS + ATTRIBUTES.index("red"), CHANNELS + ATTRIBUTES.index("blue")
    assert torch.equal(key_seen[0][0], lay[:, :1]) and torch.equal(key_seen[2][0], lay[:, third:third + 1])
    assert key_seen[2][0][blue].any() and not key_seen[2][0][red].any()
    from dataclasses import replace
    led = plan.start_level.clone()
    led[0] = 0.6                                                     # a plan with media (a remix's) has none
    assert b.cuts(replace(plan, start_level=led)) == []


def test_a_storyboard_card_that_names_the_scene_before_it_goes_on_from_it_and_another_is_placed_afresh():
    from engine.backends.toy.layout import goes_on, place_story, story_layout
    first = "a large purple square moving right on a black background"
    story = place_story([(first, 0.0), ("the purple square moving up", 1.0),
                         ("a small orange ball staying still", 2.0)], 112, 64, np.random.default_rng(5))
    (a, _), (b, _), (c, _) = story
    assert a == place(first, 112, 64, np.random.default_rng(5))           # where the keyframe pass placed it
    o, p = a.objects[0], b.objects[0]
    assert (p.color, p.shape, p.size, p.motion) == ("purple", "square", "large", "up")
    assert np.allclose((p.x * 112, p.y * 64), world.centres(o, 112, 64, np.array([1.0]))[0])   # where it got to
    assert (c.objects[0].color, c.objects[0].shape, c.objects[0].motion) == ("orange", "circle", "still")   # afresh
    assert goes_on(a, "a big purple box moving left") and not goes_on(a, "a purple circle")
    assert not goes_on(a, "a purple square on a white background") and not goes_on(None, first)
    f = toy_spec().spatial_factor
    times = np.array([0.0, 0.5, 1.0, 1.5, 2.5])
    lay = story_layout(story, 112, 64, f, times)
    for k, t in enumerate(times):
        scene, start = story[min(int(t), 2)]
        assert np.array_equal(lay[:, k], scene_layout(scene, 112, 64, f, t - start))
    none = story_layout([(None, 0.0), (a, 1.0)], 112, 64, f, times)
    assert not none[:, :2].any() and none[:, 2:].any()
