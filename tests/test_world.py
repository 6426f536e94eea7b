"""The toy world (WORLD.md): exact renders, the world's motion rules, scene sampling, captions."""

import numpy as np
import pytest

from engine.backends.toy.world import (BACKGROUNDS, COLORS, SHAPES, SIZES, SPEED, ObjectSpec,
                                       SceneSpec, caption, centres, object_side, parse_caption,
                                       render, sample_scene, stream)

ASPECTS = ((112, 64), (64, 64), (64, 112))


def _coverage(clip: np.ndarray, background: str) -> np.ndarray:
    """Object coverage per pixel from the distance to the background (one object). (N, H, W)"""
    d = np.abs(clip.astype(np.float64) - BACKGROUNDS[background]).sum(-1)
    return d / d.max()


def _centroid(cov: np.ndarray) -> np.ndarray:
    """Coverage-weighted centroid per frame in pixels. (N, 2) as (x, y)"""
    n, h, w = cov.shape
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    mass = cov.sum((1, 2))
    return np.stack([(cov * xs).sum((1, 2)) / mass, (cov * ys).sum((1, 2)) / mass], axis=1)


@pytest.mark.parametrize("width,height", ASPECTS + ((30, 17), (17, 30)))
def test_render_exact_size(width, height):
    scene = SceneSpec("gray", (ObjectSpec("circle", "red", "large", "right", 0.5, 0.5),))
    clip = render(scene, width, height, fps=12, n_frames=7)
    assert clip.shape == (7, height, width, 3) and clip.dtype == np.uint8


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("width,height", ASPECTS)
def test_colours_exact_at_centres_and_background(shape, width, height):
    """Covered pixels hold the palette colour exactly, the rest the background exactly."""
    obj = ObjectSpec(shape, "purple", "small", "down", 0.4, 0.3)
    clip = render(SceneSpec("beige", (obj,)), width, height, fps=8, n_frames=16)
    xy = centres(obj, width, height, np.arange(16) / 8)
    for f, (x, y) in enumerate(xy):
        assert tuple(clip[f, int(y), int(x)]) == COLORS["purple"]
        assert tuple(clip[f, 0, 0]) == tuple(clip[f, -1, -1]) == BACKGROUNDS["beige"]
    # Anti-aliased: some edge pixels lie strictly between background and colour.
    cov = _coverage(clip, "beige")
    assert ((cov > 0.05) & (cov < 0.95)).any()


@pytest.mark.parametrize("motion,axis,sign",
                         [("right", 0, 1), ("left", 0, -1), ("down", 1, 1), ("up", 1, -1)])
def test_speed_is_half_the_frame_in_two_seconds(motion, axis, sign):
    width, height = 112, 64
    start = {"right": (0.2, 0.5), "left": (0.8, 0.5), "down": (0.5, 0.2), "up": (0.5, 0.8)}[motion]
    obj = ObjectSpec("square", "green", "small", motion, *start)
    clip = render(SceneSpec("black", (obj,)), width, height, fps=12, n_frames=25)
    xy = _centroid(_coverage(clip, "black"))
    moved = xy[24] - xy[0]
    assert moved[axis] == pytest.approx(sign * (width, height)[axis] / 2, abs=0.05)
    assert moved[1 - axis] == pytest.approx(0, abs=0.05)


def test_positions_depend_on_time_not_fps():
    scene = SceneSpec("white", (ObjectSpec("triangle", "blue", "large", "left", 0.7, 0.4),
                                ObjectSpec("circle", "orange", "small", "up", 0.2, 0.7)))
    a, b = render(scene, 64, 112, 12, 24), render(scene, 64, 112, 24, 48)
    np.testing.assert_array_equal(a, b[::2])


def test_bounce_stays_inside_and_reverses():
    width, height = 64, 64
    obj = ObjectSpec("circle", "red", "large", "right", 0.5, 0.5)
    times = np.arange(120) / 12  # 10 s: several bounces
    x = centres(obj, width, height, times)[:, 0]
    half = object_side(obj, width, height) / 2
    assert x.min() >= half - 1e-9 and x.max() <= width - half + 1e-9
    assert (np.diff(x) < 0).any() and (np.diff(x) > 0).any()
    clip = render(SceneSpec("gray", (obj,)), width, height, 12, 120)
    area = _coverage(clip, "gray").sum((1, 2))
    assert np.ptp(area) < 0.02 * area.mean()  # never cut by the frame edge


def _boxes_apart(a, b, w, h, times):
    pa, pb = centres(a, w, h, times), centres(b, w, h, times)
    half = (object_side(a, w, h) + object_side(b, w, h)) / 2
    return (np.abs(pa - pb) > half).any(axis=1).all()


@pytest.mark.parametrize("width,height", ASPECTS)
def test_sample_scene_invariants(width, height):
    rng = np.random.default_rng(width * 1000 + height)
    counts = {1: 0, 2: 0}
    for _ in range(300):
        scene = sample_scene(rng, (width, height))
        objs = scene.objects
        counts[len(objs)] += 1
        assert len({o.color for o in objs}) == len(objs)
        assert all(o.color not in BACKGROUNDS for o in objs)
        if len(objs) == 2:
            assert _boxes_apart(*objs, width, height, np.linspace(0, 4, 401))
        for o in objs:
            # >= 1 s of free travel: the first second moves exactly SPEED of the frame, no bounce.
            p = centres(o, width, height, np.array([0.0, 1.0]))
            step = (p[1] - p[0]) / (width, height)
            want = {"left": (-SPEED, 0), "right": (SPEED, 0), "up": (0, -SPEED), "down": (0, SPEED),
                    "still": (0, 0)}[o.motion]
            np.testing.assert_allclose(step, want, atol=1e-9)
            half = SIZES[o.size] * min(width, height) / 2
            assert half - 1e-9 <= o.x * width <= width - half + 1e-9
            assert half - 1e-9 <= o.y * height <= height - half + 1e-9
    assert counts[1] > 50 and counts[2] > 50


def test_canonical_caption():
    scene = SceneSpec("black", (ObjectSpec("circle", "red", "small", "left", 0.7, 0.5),))
    assert caption(scene) == "a small red circle moving left on a black background"
    two = SceneSpec("gray", (ObjectSpec("square", "blue", "large", "up", 0.2, 0.7),
                             ObjectSpec("triangle", "yellow", "small", "still", 0.7, 0.3)))
    assert caption(two) == ("a large blue square moving up and a small yellow triangle staying still "
                            "on a gray background")


def test_caption_parse_round_trip_over_paraphrases():
    rng = np.random.default_rng(7)
    words = set()
    for _ in range(600):
        scene = sample_scene(rng, (64, 64))
        for text in (caption(scene), caption(scene, rng)):
            words.update(text.replace(",", "").split())
            q = parse_caption(text)
            assert q.unknown == (), text
            assert len(q.objects) == len(scene.objects), text
            for want, got in zip(scene.objects, q.objects):
                assert (got.color, got.shape, got.motion) == (want.color, want.shape, want.motion), text
                assert got.size in (None, want.size), text
            assert q.background in (None, scene.background), text
    # The paraphrases really use the synonyms and templates.
    assert {"ball", "disc", "box", "block", "drifting", "sliding", "going", "resting", "not",
            "over", "against"} <= words


def test_parse_caption_synonyms_and_unknown_words():
    q = parse_caption("a blue square moving up and a yellow triangle staying still on gray")
    assert [(o.color, o.shape, o.motion, o.size) for o in q.objects] == [
        ("blue", "square", "up", None), ("yellow", "triangle", "still", None)]
    assert q.background == "gray" and q.unknown == ()
    q = parse_caption("Against grey, a big green disc not moving, and a tiny red block sliding to the left.")
    assert [(o.color, o.shape, o.motion, o.size) for o in q.objects] == [
        ("green", "circle", "still", "large"), ("red", "square", "left", "small")]
    assert q.background == "gray"
    q = parse_caption("a pink dragon")
    assert q.unknown == ("pink", "dragon") and q.objects == ()
    q = parse_caption("an orange ball drifting upward in the sunset")
    assert (q.objects[0].color, q.objects[0].shape, q.objects[0].motion) == ("orange", "circle", "up")
    assert q.unknown == ("sunset",)


def test_stream_is_deterministic_and_consistent():
    a, b, c = stream(3), stream(3), stream(4)
    for _ in range(6):
        x, y, z = next(a), next(b), next(c)
        np.testing.assert_array_equal(x.clip, y.clip)
        assert (x.caption, x.scene, x.fps) == (y.caption, y.scene, y.fps)
        n, h, w, _ = x.clip.shape
        assert (w, h) in ASPECTS and x.fps in (8, 12, 24) and n / x.fps in (1, 2, 3, 4)
        assert [o.color for o in parse_caption(x.caption).objects] == [o.color for o in x.scene.objects]
    assert x.caption != z.caption or not np.array_equal(x.clip, z.clip)
