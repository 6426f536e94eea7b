"""The guide: a shot's keyframe with its objects moved along the planned paths (engine/backends/toy/guide.py), and
the backend's rough clip built from it for the image-to-video pass."""
import dataclasses

import numpy as np
import pytest
import torch

from engine.backends.toy import world
from engine.backends.toy.guide import matte, shift, shot_frames

W = H = 64
FPS = 8   # SPEED * 64 px / 8 fps: an object moves exactly 2 px a frame, so a moved drawing is the world's own


def scene(*objects, background="gray") -> world.SceneSpec:
    return world.SceneSpec(background, tuple(objects))


RED = world.ObjectSpec("square", "red", "small", "right", 0.3, 0.32)
BLUE = world.ObjectSpec("triangle", "blue", "large", "down", 0.71, 0.3)


def test_shift_moves_and_fills_with_zeros():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert np.array_equal(shift(a, 1, 0), [[0, 0, 1, 2], [0, 4, 5, 6], [0, 8, 9, 10]])
    assert np.array_equal(shift(a, -2, 1), [[0, 0, 0, 0], [2, 3, 0, 0], [6, 7, 0, 0]])
    assert not shift(a, 4, 0).any() and np.array_equal(shift(a, 0, 0), a)


def test_a_matte_is_the_objects_own_coverage_and_nothing_else():
    s = scene(RED, BLUE)
    image = world.render(s, W, H, FPS, 1)[0].astype(np.float32)
    for k, obj in enumerate(s.objects):
        cov, origin = world._coverage(obj.shape, world.object_side(obj, W, H),
                                      world.centres(obj, W, H, np.zeros(1)))
        want = np.zeros((1, H, W, 1), np.float32)
        world._paste(want, cov, origin, (1.0,))
        np.testing.assert_allclose(matte(image, s, k, 0.0), want[0, :, :, 0], atol=0.02)
    blank = world.render(scene(), W, H, FPS, 1)[0].astype(np.float32)
    assert matte(blank, s, 0, 0.0) is None                                   # nothing of its colour drawn


@pytest.mark.parametrize("background", ["gray", "white", "black"])
def test_a_rendered_keyframe_moved_along_its_plan_is_the_worlds_own_clip(background):
    s = scene(RED, BLUE, background=background)
    clip = world.render(s, W, H, FPS, 9).astype(np.float32)                  # (9, H, W, 3)
    frames = shot_frames(clip[0], [(s, 0.0)], 0.0, np.arange(9) / FPS)
    assert np.abs(frames - clip).max() <= 3 and np.abs(frames - clip).mean() < 0.05
    assert np.abs(clip[8] - clip[0]).max() > 100                             # the objects did move


def test_a_card_that_goes_on_carries_the_same_objects_on_with_its_own_motions():
    """A storyboard's spans: the keyframe drawn at 0.25 s of the first card; after 0.5 s the card that goes on
    turns the square down (world.continued): frames follow each span's plan, as the world renders them."""
    s = scene(RED)
    later = world.continued(s, W, H, 0.5, ["down"])
    spans = [(s, 0.0), (later, 0.5)]
    times = np.arange(2, 9) / FPS
    frames = shot_frames(world.render(s, W, H, FPS, 3)[2].astype(np.float32), spans, 0.25, times)
    first = world.render(s, W, H, FPS, 4).astype(np.float32)[2:]
    then = world.render(later, W, H, FPS, 5).astype(np.float32)
    assert np.abs(frames[:2] - first[:2]).max() <= 3                          # 0.25 s, 0.375 s: moving right
    assert np.abs(frames[2:] - then[:5]).max() <= 3                           # from 0.5 s: moving down


def test_what_the_plan_does_not_name_stays_where_it_was_drawn():
    """Only the planned objects move: an object of another colour in the keyframe is left in place."""
    drawn = scene(RED, dataclasses.replace(BLUE, motion="still"))
    image = world.render(drawn, W, H, FPS, 1)[0].astype(np.float32)
    frames = shot_frames(image, [(scene(RED), 0.0)], 0.0, np.arange(5) / FPS)
    alone = world.render(scene(dataclasses.replace(BLUE, motion="still")), W, H, FPS, 1)[0].astype(np.float32)
    blue = np.abs(alone - world.BACKGROUNDS["gray"]).sum(-1) > 30
    assert np.abs(frames[:, blue] - image[blue]).max() <= 3
    assert np.abs(frames[4] - world.render(drawn, W, H, FPS, 5)[4]).max() <= 3


def test_the_backend_guides_text_to_video_from_its_keyframe_and_nothing_else(backend_parts, make_image):
    """ToyBackend.guide: a text plan gets a rough clip made from its keyframe, moved along the scene the planner
    drew for it (the one its layouts are drawn from), so the clip starts from the keyframe's still and its object
    goes the way the caption says; a plan with media, a prompt the planner cannot place, or guide_level 1, get
    none."""
    from engine import ops, plan as plan_mod
    b = backend_parts
    tl = ops.t2v("a small red square moving right on a gray background", 2.0, aspect="1:1", resolution=64, fps=8,
                 seed=3)
    plan = plan_mod.compile(tl, b)
    (planned, _), = b._stories(plan, tl.seed, 1)[0]
    drawn = world.render(planned, W, H, FPS, 17)                               # what a perfect model would draw
    still = torch.from_numpy(drawn[:1]).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
    known = b.encode_video(still).repeat(1, 1, plan.known.shape[1], 1, 1)     # (1, C, F, h, w)
    rough = b.guide(plan, tl.seed)(known)
    assert rough.shape == known.shape
    moved = ((b.decode(rough)[0].permute(1, 2, 3, 0) + 1) * 127.5).numpy()   # (N, H, W, 3)
    assert np.abs(moved - drawn).mean() < 2.0                                 # the world's own clip, through the VAE
    red = (moved[..., 0] > 180) & (moved[..., 1] < 100)
    xs = [np.nonzero(red[n])[1].mean() for n in (0, 8, 16)]
    assert xs[0] + 10 < xs[1] < xs[2] - 10                                    # the square went right
    assert b.guide(plan_mod.compile(ops.t2v("a cat playing the violin", 2.0, resolution=64, fps=8), b), 1) is None
    image = ops.i2v(make_image(w=64, h=64), tl.cards[0].text if tl.cards else tl.prompt, duration_s=2.0,
                    resolution=64, fps=8, seed=3)
    assert b.guide(plan_mod.compile(image, b), 3) is None
    b.guide_level = 1.0
    assert b.guide(plan, tl.seed) is None


@pytest.fixture(scope="module")
def backend_parts():
    """A backend with the shipped VAE and text encoder and tiny untrained DiTs that read a layout."""
    from engine.backends.toy.backend import ASSETS, MiniLM, ToyBackend, load_vae
    from engine.backends.toy.layout import GROUNDED
    from engine.backends.toy.model import DiT, DiTConfig
    tiny = DiTConfig(in_channels=16, patch=2, width=32, depth=2, heads=2, text_dim=384, layout=GROUNDED)
    return ToyBackend(load_vae(ASSETS / "toy_vae.safetensors"), DiT(tiny).eval(), MiniLM(), keyframe=DiT(tiny).eval(),
                      i2v=DiT(tiny).eval(), keyframe_frames=1)
