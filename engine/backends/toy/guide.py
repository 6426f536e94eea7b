"""A rough clip from a shot's keyframe: its objects moved along the planner's paths, for the image-to-video pass to
refine from partial noise instead of drawing the shot from pure noise.

The image-to-video model rounds a moving square's corners in 4 frames of 10 even from a perfect first frame
(assets/MODEL_CARD.md, session 20), while a clip it refines from noise 0.6 or below keeps the shapes it is given
(session 20's remix pairs: shape 0.956). So the keyframe's own drawing is carried along the plan first, as
PhysGen (Liu et al. 2024) carries an image's objects along a simulated path and lets a video model refine the
result: each object is cut out of the keyframe by its colour (a matte: how far each pixel is from the background
toward the object's colour), the hole filled with the background, and the object pasted at its planned
displacement in every frame. Whatever else the keyframe holds stays where it is.
"""
from __future__ import annotations

import numpy as np

from engine.backends.toy import world
from engine.backends.toy.layout import span_at

# a pixel belongs to an object's matte only this close (RGB, 0-255) to the line from background to its colour
RESIDUAL = 60.0
# the matte's window around the drawn object: half its side plus this many pixels, for anti-aliased edges
MARGIN = 3.0


def shift(image: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """(H, W, ...) moved right by dx and down by dy pixels, what comes in zero."""
    out = np.zeros_like(image)
    H, W = image.shape[:2]
    w, h = W - abs(dx), H - abs(dy)
    if w > 0 and h > 0:
        xs, xd, ys, yd = max(-dx, 0), max(dx, 0), max(-dy, 0), max(dy, 0)
        out[yd:yd + h, xd:xd + w] = image[ys:ys + h, xs:xs + w]
    return out


def matte(image: np.ndarray, scene: world.SceneSpec, k: int, t: float) -> np.ndarray | None:
    """image (H, W, 3) float 0-255 drawn for `scene` at its time t (s) -> (H, W) the k-th object's alpha in [0, 1]:
    the pixels of its colour near where the plan puts it, within a window round what was drawn; None when nothing
    of its colour was drawn there."""
    H, W = image.shape[:2]
    obj = scene.objects[k]
    bg = np.asarray(world.BACKGROUNDS[scene.background], np.float32)
    u = np.asarray(world.COLORS[obj.color], np.float32) - bg
    d = image - bg                                                        # (H, W, 3)
    a = np.clip(d @ u / (u @ u), 0.0, 1.0)                                # (H, W)
    a = np.where(np.linalg.norm(d - a[..., None] * u, axis=-1) < RESIDUAL, a, 0.0)
    side = world.object_side(obj, W, H)
    px, py = world.centres(obj, W, H, np.array([t]))[0]
    ys, xs = np.mgrid[0:H, 0:W] + 0.5                                     # pixel centres
    drawn = (a > 0.5) & (np.abs(xs - px) <= side) & (np.abs(ys - py) <= side)
    if drawn.sum() < 3:
        return None
    cx, cy = xs[drawn].mean(), ys[drawn].mean()
    reach = side / 2 + MARGIN
    return (a * ((np.abs(xs - cx) <= reach) & (np.abs(ys - cy) <= reach))).astype(np.float32)


def shot_frames(image: np.ndarray, spans: list[tuple[world.SceneSpec, float]], t0: float,
                times: np.ndarray) -> np.ndarray:
    """image (H, W, 3) float 0-255, the keyframe drawn at time t0 (s) of a storyboard planned as spans [(scene,
    start s)] (layout.place_story) -> (len(times), H, W, 3) float: at each of `times` (s) the keyframe with each
    object of the scene at t0 moved by its planned displacement since t0 (bounces and the cards that go on from
    it included: an object keeps its place in the caption's order)."""
    scene0, start0 = span_at(spans, t0)
    alphas = [matte(image, scene0, k, t0 - start0) for k in range(len(scene0.objects))]
    cover = np.max([a for a in alphas if a is not None] or [np.zeros(image.shape[:2], np.float32)], axis=0)
    bg = np.median(image[cover == 0], axis=0) if (cover == 0).any() else image.mean((0, 1))   # (3,)
    base = np.where(cover[..., None] > 0, bg, image)                     # the objects cut out
    # each object premultiplied by its alpha over that background: image = bg (1 - a) + fg
    fgs = [None if a is None else (image - bg * (1 - a[..., None])) * (a[..., None] > 0) for a in alphas]
    p0 = [world.centres(o, image.shape[1], image.shape[0], np.array([t0 - start0]))[0] for o in scene0.objects]
    out = np.empty((len(times), *image.shape), np.float32)
    for n, t in enumerate(times):   # frames of the shot before its card's first full one go by its scene too
        scene, start = span_at(spans, max(float(t), start0))
        frame = base.copy()
        for k, a in enumerate(alphas):
            if a is None or k >= len(scene.objects):
                continue
            p = world.centres(scene.objects[k], image.shape[1], image.shape[0], np.array([t - start]))[0]
            dx, dy = (int(v) for v in np.rint(p - p0[k]))
            frame = frame * (1 - shift(a, dx, dy)[..., None]) + shift(fgs[k], dx, dy)
        out[n] = frame
    return out

