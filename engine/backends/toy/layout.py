"""Layout maps for the keyframe model: where each object the caption names starts, as a blob per object.

The keyframe model split its object into copies in ~42 % of frames (assets/MODEL_CARD.md, sessions 18-21):
at high noise nothing tells it where the one object goes, and the noise suggests several places. A layout
says it, as layout-to-image models are told by boxes (GLIGEN, Li et al. 2023; LLM-grounded diffusion, Lian et
al. 2023, where a planner writes the boxes): channel k holds a Gaussian blob at the k-th object's start centre,
its width the object's size, on the latent grid. A grounded layout (GROUNDED channels) says what each blob is
too, as GLIGEN grounds each box in its phrase: one channel per colour and per shape, each holding the blobs of
the objects that have it; a plain layout left colour and shape to the caption, and two-object scenes drew both
blobs in one colour (assets/MODEL_CARD.md, session 22). At sampling time
the planner is the world's own prior (`prompt_layout`): the prompt is parsed and its objects placed as the
world places them, so a moving object has room ahead. A prompt outside the world gets no layout (zeros), as
a share of training samples do.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from engine.backends.toy import world

CHANNELS = 2   # one per object, in caption order: the world holds one or two
ATTRIBUTES = (*world.COLORS, *world.SHAPES)   # a grounded layout's further channels, in this order
GROUNDED = CHANNELS + len(ATTRIBUTES)
SILHOUETTE = GROUNDED + CHANNELS   # and then each object's share of each latent cell: its outline, corners and all
# blob sigma as a share of the object's side: at 1/4 a small object's blob fell between latent cells (8 px) and
# read as little as 0.2 at the nearest one (run lay1, assets/MODEL_CARD.md); at 1/2 every cell near it reads >= 0.68
SIGMA = 0.5


def attributes(obj: world.ObjectSpec) -> np.ndarray:
    """(len(ATTRIBUTES),) 1 at the object's colour and shape, 0 elsewhere."""
    return np.array([a in (obj.color, obj.shape) for a in ATTRIBUTES], np.float32)


def silhouette(shape: str, cx: float, cy: float, side: float, width: int, height: int, factor: int) -> np.ndarray:
    """(height/factor, width/factor) the share of each latent cell an object covers, from the world's own
    anti-aliased drawing (world._coverage) pooled over each cell's pixels."""
    cov, origin = world._coverage(shape, side, np.array([[cx, cy]], np.float64))
    canvas = np.zeros((1, height, width, 1), np.float32)
    world._paste(canvas, cov, origin, (1.0,))
    return canvas[0, :, :, 0].reshape(height // factor, factor, width // factor, factor).mean((1, 3))


def blobs(objects: list[tuple[float, float, float]], width: int, height: int, factor: int,
          channels: int = CHANNELS, kinds: list[np.ndarray] | None = None,
          shapes: list[str] | None = None) -> np.ndarray:
    """objects [(cx, cy, side) in pixels] -> (channels, height/factor, width/factor) float32 maps in [0, 1]:
    a Gaussian of sigma SIGMA * side at each centre, sampled at the latent cells' centres; objects past
    CHANNELS are left out. channels GROUNDED: then each ATTRIBUTES channel too, the largest of the blobs of
    the objects whose `kinds` (attributes()) have it; SILHOUETTE: then each object's silhouette (its `shapes`)."""
    if channels not in (CHANNELS, GROUNDED, SILHOUETTE):
        raise ValueError(f"a layout has {CHANNELS}, {GROUNDED} or {SILHOUETTE} channels, not {channels}")
    h, w = height // factor, width // factor
    ys, xs = (np.arange(h) + 0.5) * factor, (np.arange(w) + 0.5) * factor
    maps = np.zeros((CHANNELS, h, w), np.float32)
    for k, (cx, cy, side) in enumerate(objects[:CHANNELS]):
        s = SIGMA * side
        maps[k] = np.exp(-((xs[None] - cx) ** 2 + (ys[:, None] - cy) ** 2) / (2 * s * s))
    if channels == CHANNELS:
        return maps
    kind = np.zeros((CHANNELS, len(ATTRIBUTES)), np.float32)
    kind[:len(kinds[:CHANNELS])] = kinds[:CHANNELS]
    grounded = np.concatenate([maps, (maps[:, None] * kind[:, :, None, None]).max(0)])
    if channels == GROUNDED:
        return grounded
    outline = np.zeros((CHANNELS, h, w), np.float32)
    for k, ((cx, cy, side), shape) in enumerate(zip(objects[:CHANNELS], shapes)):
        outline[k] = silhouette(shape, cx, cy, side, width, height, factor)
    return np.concatenate([grounded, outline])


def scene_layout(scene: world.SceneSpec, width: int, height: int, factor: int, t: float = 0.0,
                 channels: int = CHANNELS) -> np.ndarray:
    """(channels, h, w) the layout of a scene's objects at time t (s), in the order its caption names them."""
    objs = [(*world.centres(o, width, height, np.array([t]))[0], world.object_side(o, width, height))
            for o in scene.objects]
    return blobs(objs, width, height, factor, channels, [attributes(o) for o in scene.objects],
                 [o.shape for o in scene.objects])


def track_layout(scene: world.SceneSpec, width: int, height: int, factor: int, times: np.ndarray,
                 channels: int = CHANNELS) -> np.ndarray:
    """(channels, F, h, w) the layout at each of `times` (s): its objects' paths, bounces and all."""
    return story_layout([(scene, 0.0)], width, height, factor, times, channels)


def story_layout(spans: list[tuple[world.SceneSpec | None, float]], width: int, height: int, factor: int,
                 times: np.ndarray, channels: int = CHANNELS) -> np.ndarray:
    """(channels, F, h, w) a storyboard's layout: spans [(scene or None, start s)] in time order; the frame at each
    of `times` (s) laid out by the last scene started by then, at its time since that start (None: empty)."""
    h, w = height // factor, width // factor
    out = np.zeros((channels, len(times), h, w), np.float32)
    for f, t in enumerate(times):
        scene, start = span_at(spans, float(t))
        if scene is not None:
            out[:, f] = scene_layout(scene, width, height, factor, float(t) - start, channels)
    return out


def span_at(spans: list[tuple[world.SceneSpec | None, float]], t: float) -> tuple[world.SceneSpec | None, float]:
    """The span of a storyboard's spans [(scene, start s)] (time order) showing at time t (s): the last started by
    then, the first before any."""
    return next((sp for sp in reversed(spans) if sp[1] <= t), spans[0])


def frame_times(spec, latent_frames: int, fps: float) -> np.ndarray:
    """(F,) the mean time (s) of the pixel frames each latent frame encodes."""
    return np.array([np.mean(np.arange(*spec.pixel_range(f))) / fps for f in range(latent_frames)])


def place(text: str, width: int, height: int, rng: np.random.Generator) -> world.SceneSpec | None:
    """A scene for a prompt, placed as the world places scenes: what the prompt names kept, the rest drawn
    from rng; None when the prompt names no object of the world, or more than it holds."""
    query = world.parse_caption(text)
    known = [o for o in query.objects if any(dataclasses.astuple(o))]
    if not 1 <= len(known) <= CHANNELS:
        return None
    aspect = (width, height)
    for _ in range(50):   # two objects must start apart; rare placements fail, so draw again
        scene = world.sample_scene(rng, aspect, n_objects=len(known))
        if len(scene.objects) < len(known):
            continue
        free = [c for c in world.COLORS if c not in {o.color for o in known}]
        objs, ok = [], True
        for q, o in zip(known, scene.objects):
            color = q.color or free.pop(int(rng.integers(len(free))))
            motion, size = q.motion or o.motion, q.size or o.size
            xlo, xhi, ylo, yhi = world._start_box(motion, *world._half_extents(size, aspect))
            objs.append(world.ObjectSpec(q.shape or o.shape, color, size, motion,
                                         float(rng.uniform(xlo, xhi)), float(rng.uniform(ylo, yhi))))
        ok = len({o.color for o in objs}) == len(objs) and (
            len(objs) < 2 or world._apart(objs[0], objs[1], aspect, 4.0))
        if ok:
            return world.SceneSpec(query.background or scene.background, tuple(objs))
    return None


def goes_on(scene: world.SceneSpec | None, text: str) -> bool:
    """Whether a storyboard card names the objects of the scene before it, as a scene that goes on from it does
    (world.continued): the same count, each colour, shape and size the card names theirs, the same background."""
    if scene is None:
        return False
    q = world.parse_caption(text)
    return len(q.objects) == len(scene.objects) and q.background in (None, scene.background) and all(
        getattr(want, a) in (None, getattr(o, a)) for want, o in zip(q.objects, scene.objects)
        for a in ("color", "shape", "size"))


def new_scene(before: str, text: str) -> bool:
    """Whether a storyboard card after one captioned `before` cuts to a new scene, read from the captions alone:
    it does not name the objects and background `before` names (goes_on). Where the sampler draws a keyframe
    (ToyBackend.cuts), and where training holds one (train_dit.render_sample's `keyed`)."""
    return not goes_on(world.parse_caption(before), text)


def place_story(cards: list[tuple[str, float]], width: int, height: int,
                rng: np.random.Generator) -> list[tuple[world.SceneSpec | None, float]]:
    """A storyboard's scenes: cards [(text, start s)] in time order -> [(scene or None, start s)]. The first is
    placed as `place` places it (so with the same rng, where the keyframe pass was told); a card that names the
    scene before it goes on from it (world.continued: the same objects where they are, with the motions it
    names, the rest drawn), as storyboards are made in training; any other card is placed afresh."""
    out: list[tuple[world.SceneSpec | None, float]] = []
    for text, start in cards:
        prev = out[-1] if out else (None, 0.0)
        if goes_on(prev[0], text):
            named = [o.motion for o in world.parse_caption(text).objects]
            motions = [m or world.MOTIONS[int(rng.integers(len(world.MOTIONS)))] for m in named]
            out.append((world.continued(prev[0], width, height, start - prev[1], motions), start))
        else:
            out.append((place(text, width, height, rng), start))
    return out


def prompt_layout(text: str, width: int, height: int, factor: int, seed: int, channels: int = CHANNELS,
                  times: np.ndarray | None = None) -> np.ndarray:
    """A layout for a prompt drawn with `seed`: (channels, h, w) at its first frame, or with `times` (F,)
    (channels, F, h, w) along its objects' paths; zeros when `place` finds none."""
    scene = place(text, width, height, np.random.default_rng(seed))
    frames = () if times is None else (len(times),)
    if scene is None:
        return np.zeros((channels, *frames, height // factor, width // factor), np.float32)
    if times is None:
        return scene_layout(scene, width, height, factor, channels=channels)
    return track_layout(scene, width, height, factor, times, channels)
