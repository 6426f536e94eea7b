"""The procedural toy world of WORLD.md: scenes, an exact anti-aliased renderer, captions.

The embedded backend learns this world instead of the real one, so that every clip it
makes can be judged exactly (engine/judge.py) with no learned model. Nothing here draws
at import: every random choice goes through the caller's `np.random.Generator`, so a
seed reproduces a whole training stream with no dataset on disk.

Coordinates: x grows to the right, y grows downwards (image rows), so "up" is -y.
Pixel (row i, column j) covers [j, j+1) x [i, i+1).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Iterator, Mapping

import numpy as np

RGB = tuple[int, int, int]

BACKGROUNDS: Mapping[str, RGB] = MappingProxyType({
    "black": (20, 20, 20),
    "white": (235, 235, 235),
    "gray": (128, 128, 128),
    "beige": (225, 205, 160),
})
COLORS: Mapping[str, RGB] = MappingProxyType({
    "red": (220, 40, 40),
    "green": (40, 170, 70),
    "blue": (40, 80, 220),
    "yellow": (235, 205, 40),
    "purple": (140, 60, 190),
    "orange": (240, 130, 30),
})
SHAPES = ("circle", "square", "triangle")
# Diameter (circle) or side (square; base and height of the triangle) over the short side.
SIZES: Mapping[str, float] = MappingProxyType({"small": 0.20, "large": 0.35})
MOTIONS = ("left", "right", "up", "down", "still")
# Half the frame's width (or height) in 2 s: a quarter of it per second.
SPEED = 0.25
# Unit direction of each motion in (x, y); scaled by SPEED and the frame's width / height.
DIRECTIONS: Mapping[str, tuple[int, int]] = MappingProxyType({
    "left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1), "still": (0, 0),
})
SUPERSAMPLE = 4  # coverage samples per pixel axis: 16 levels of anti-aliasing
START_GAP = 0.05  # objects start at least this far apart (fraction of the short side)


@dataclass(frozen=True)
class ObjectSpec:
    shape: str
    color: str
    size: str
    motion: str
    x: float  # start centre (of the bounding box), fraction of the width
    y: float  # start centre, fraction of the height

    def __post_init__(self):
        assert self.shape in SHAPES, f"unknown shape {self.shape!r}"
        assert self.color in COLORS, f"unknown colour {self.color!r}"
        assert self.size in SIZES, f"unknown size {self.size!r}"
        assert self.motion in MOTIONS, f"unknown motion {self.motion!r}"


@dataclass(frozen=True)
class SceneSpec:
    background: str
    objects: tuple[ObjectSpec, ...]

    def __post_init__(self):
        assert self.background in BACKGROUNDS, f"unknown background {self.background!r}"
        colors = [o.color for o in self.objects]
        assert len(set(colors)) == len(colors), f"two objects share a colour: {colors}"


# --------------------------------------------------------------------------- motion

def object_side(obj: ObjectSpec, width: int, height: int) -> float:
    """Diameter / side of `obj` in pixels on a width x height canvas."""
    return SIZES[obj.size] * min(width, height)


def _bounce(start: float, velocity: float, times: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Position along one axis of a point moving at `velocity` and reflecting off [lo, hi]. (N,)"""
    span = hi - lo
    if span <= 0:  # object as large as the frame: it cannot move, keep it centred
        return np.full(times.shape, (lo + hi) / 2)
    u = np.mod(start + velocity * times - lo, 2 * span)  # a triangle wave of period 2*span
    return lo + np.where(u > span, 2 * span - u, u)


def centres(obj: ObjectSpec, width: int, height: int, times: np.ndarray) -> np.ndarray:
    """Bounding-box centre in pixels at each time in seconds. (N, 2) as (x, y)

    Positions are functions of time, not of frame index, so any fps shows the same motion.
    The box bounces: its edge, not its centre, stays inside the frame.
    """
    half = object_side(obj, width, height) / 2
    dx, dy = DIRECTIONS[obj.motion]
    x = _bounce(obj.x * width, dx * SPEED * width, times, half, width - half)
    y = _bounce(obj.y * height, dy * SPEED * height, times, half, height - half)
    return np.stack([x, y], axis=-1)


# --------------------------------------------------------------------------- rendering

def _inside(shape: str, dx: np.ndarray, dy: np.ndarray, half: float) -> np.ndarray:
    """Whether offsets (dx, dy) from the box centre fall inside the shape (broadcast)."""
    if shape == "circle":
        return dx * dx + dy * dy <= half * half
    if shape == "square":
        return (np.abs(dx) <= half) & (np.abs(dy) <= half)
    # Triangle pointing up: apex at the top centre, base along the bottom of the box.
    return (dy <= half) & (np.abs(dx) <= (dy + half) / 2)


def _coverage(shape: str, side: float, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fraction of each pixel the shape covers, in a small window per frame.

    xy: (N, 2) centres in pixels. Returns coverage (N, n, n) float32 and the window's
    top-left pixel (N, 2) int as (x0, y0). Supersampling keeps edges anti-aliased for
    every shape with one rule; the window keeps the work proportional to the object.
    """
    n = int(np.ceil(side)) + 1
    origin = np.floor(xy - side / 2).astype(np.int64)                     # (N, 2)
    sub = ((np.arange(n * SUPERSAMPLE) + 0.5) / SUPERSAMPLE).astype(np.float32)
    off = (origin - xy).astype(np.float32)                                # (N, 2)
    dx = (off[:, 0, None] + sub)[:, None, :]                              # (N, 1, S)
    dy = (off[:, 1, None] + sub)[:, :, None]                              # (N, S, 1)
    inside = _inside(shape, dx, dy, side / 2)                             # (N, S, S)
    cov = inside.reshape(len(xy), n, SUPERSAMPLE, n, SUPERSAMPLE).mean(axis=(2, 4), dtype=np.float32)
    return cov, origin                                                    # (N, n, n), (N, 2)


def _paste(frames: np.ndarray, cov: np.ndarray, origin: np.ndarray, rgb: RGB) -> None:
    """Blend colour `rgb` into frames (N, H, W, 3) float32 by coverage (N, n, n), in place."""
    _, height, width, _ = frames.shape
    n = cov.shape[1]
    color = np.asarray(rgb, np.float32)
    for f, (x0, y0) in enumerate(origin):
        xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + n, width), min(y0 + n, height)
        if xa >= xb or ya >= yb:
            continue
        alpha = cov[f, ya - y0:yb - y0, xa - x0:xb - x0, None]           # (h, w, 1)
        region = frames[f, ya:yb, xa:xb]                                  # (h, w, 3) view
        region += alpha * (color - region)


def render(scene: SceneSpec, width: int, height: int, fps: float, n_frames: int) -> np.ndarray:
    """Draw `scene` at its native size. (N, H, W, 3) uint8

    Objects are drawn in order (a later one covers an earlier one where they cross).
    Fully covered pixels hold the exact palette colour; edges are anti-aliased.
    """
    assert width > 0 and height > 0 and fps > 0 and n_frames >= 0, "bad render size"
    times = np.arange(n_frames) / fps                                     # (N,)
    frames = np.empty((n_frames, height, width, 3), np.float32)           # (N, H, W, 3)
    frames[:] = BACKGROUNDS[scene.background]
    for obj in scene.objects:
        side = object_side(obj, width, height)
        cov, origin = _coverage(obj.shape, side, centres(obj, width, height, times))
        _paste(frames, cov, origin, COLORS[obj.color])
    return np.rint(frames).astype(np.uint8)


# --------------------------------------------------------------------------- sampling

def _half_extents(size: str, aspect: tuple[float, float]) -> tuple[float, float]:
    """Half the object's side as fractions of the width and of the height."""
    w, h = aspect
    side = SIZES[size] * min(w, h)
    return side / (2 * w), side / (2 * h)


def _start_box(motion: str, rx: float, ry: float) -> tuple[float, float, float, float]:
    """(xlo, xhi, ylo, yhi) of allowed start centres: inside the frame, and for a moving
    object at least one second (SPEED of the frame) of free travel before the edge ahead."""
    dx, dy = DIRECTIONS[motion]
    xlo, xhi, ylo, yhi = rx, 1 - rx, ry, 1 - ry
    xlo, xhi = xlo + SPEED * (dx < 0), xhi - SPEED * (dx > 0)
    ylo, yhi = ylo + SPEED * (dy < 0), yhi - SPEED * (dy > 0)
    return xlo, xhi, ylo, yhi


def _apart(a: ObjectSpec, b: ObjectSpec, aspect: tuple[float, float], horizon: float) -> bool:
    """Whether the boxes of a and b stay START_GAP apart along x or y from 0 to `horizon` s.

    Checked on a fine time grid of the bouncing paths, so that no object hides another
    within a clip: every object stays visible and judgeable in every frame.
    """
    w, h = aspect
    times = np.linspace(0.0, horizon, max(2, int(horizon * 50) + 1))       # (T,)
    gap = START_GAP * min(w, h) / np.array([w, h])                        # (2,)
    pa, pb = centres(a, w, h, times), centres(b, w, h, times)             # (T, 2) px
    half = (object_side(a, w, h) + object_side(b, w, h)) / 2 / np.array([w, h])
    apart = np.abs(pa - pb) / np.array([w, h]) >= half + gap              # (T, 2)
    return bool(apart.any(axis=1).all())


def _pick(rng: np.random.Generator, options):
    """One element of a sequence (strings stay str, not numpy scalars)."""
    return options[int(rng.integers(len(options)))]


def _sample_object(rng: np.random.Generator, color: str, aspect: tuple[float, float]) -> ObjectSpec:
    size, motion = _pick(rng, tuple(SIZES)), _pick(rng, MOTIONS)
    xlo, xhi, ylo, yhi = _start_box(motion, *_half_extents(size, aspect))
    x, y = rng.uniform(xlo, xhi), rng.uniform(ylo, yhi)
    return ObjectSpec(_pick(rng, SHAPES), color, size, motion, float(x), float(y))


def sample_scene(rng: np.random.Generator, aspect: tuple[float, float] = (1, 1),
                 horizon: float = 4.0, n_objects: int | None = None) -> SceneSpec:
    """A random scene for a canvas of shape aspect = (W, H): one or two objects of distinct
    colours that stay apart for `horizon` seconds (the longest training clip), each moving
    one with >= 1 s of free travel ahead. Should a second object find no place (rare),
    the scene keeps one. n_objects: 1 or 2 asked for (None: either, at random)."""
    background = _pick(rng, tuple(BACKGROUNDS))
    n = n_objects or int(rng.integers(1, 3))
    colors = rng.permutation(len(COLORS))[:n]
    objects: list[ObjectSpec] = []
    for c in colors:
        for _ in range(200):
            obj = _sample_object(rng, tuple(COLORS)[c], aspect)
            if all(_apart(obj, o, aspect, horizon) for o in objects):
                objects.append(obj)
                break
    return SceneSpec(background, tuple(objects))


# --------------------------------------------------------------------------- captions

SHAPE_WORDS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "circle": ("circle", "ball", "disc"),
    "square": ("square", "box", "block"),
    "triangle": ("triangle",),
})
MOVE_VERBS = ("moving", "drifting", "sliding", "going")
STILL_PHRASES = ("staying still", "resting", "not moving")
BACKGROUND_PHRASES = ("on a {} background", "on {}", "over a {} background",
                      "against a {} background", "against {}")
JOINERS = (" and ", ", and ", " with ")
DIRECTION_PHRASES: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "left": ("left", "to the left"), "right": ("right", "to the right"),
    "up": ("up", "upward"), "down": ("down", "downward"),
})


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _object_phrase(obj: ObjectSpec, rng: np.random.Generator | None) -> str:
    """'a small red circle moving left' (canonical), or a paraphrase drawn from rng."""
    if rng is None:
        motion = "staying still" if obj.motion == "still" else f"moving {obj.motion}"
        return f"a {obj.size} {obj.color} {obj.shape} {motion}"
    if obj.motion == "still":
        motion = _pick(rng, STILL_PHRASES)
    else:
        motion = f"{_pick(rng, MOVE_VERBS)} {_pick(rng, DIRECTION_PHRASES[obj.motion])}"
    words = ([obj.size] if rng.random() < 0.5 else []) + [obj.color, _pick(rng, SHAPE_WORDS[obj.shape])]
    return f"{_article(words[0])} {' '.join(words)} {motion}"


def continued(scene: SceneSpec, width: int, height: int, t: float, motions) -> SceneSpec:
    """A storyboard's next scene that goes on from `scene`: the same objects where they are at time t (s), each
    with its motion from `motions` (one per object)."""
    objs = []
    for o, motion in zip(scene.objects, motions):
        cx, cy = centres(o, width, height, np.array([t]))[0]
        objs.append(replace(o, x=float(cx / width), y=float(cy / height), motion=str(motion)))
    return replace(scene, objects=tuple(objs))


def caption(scene: SceneSpec, rng: np.random.Generator | None = None) -> str:
    """The scene in words. rng=None: the canonical caption, which names every attribute
    ('a small red circle moving left on a black background'); otherwise a paraphrase
    from the fixed templates and synonyms (size and background optional)."""
    if rng is None:
        objects = " and ".join(_object_phrase(o, None) for o in scene.objects)
        return f"{objects} on a {scene.background} background"
    objects = _pick(rng, JOINERS).join(_object_phrase(o, rng) for o in scene.objects)
    background = _pick(rng, BACKGROUND_PHRASES).format(scene.background)
    template = _pick(rng, ("{o} {b}", "{o} {b}", "{b}, {o}", "{o}"))
    return template.format(o=objects, b=background)


@dataclass(frozen=True)
class ObjectQuery:
    """One object a prompt mentions; None where the prompt does not say."""
    color: str | None = None
    shape: str | None = None
    motion: str | None = None
    size: str | None = None


@dataclass(frozen=True)
class SceneQuery:
    objects: tuple[ObjectQuery, ...]
    background: str | None
    unknown: tuple[str, ...]  # words outside the world, in prompt order


def _vocabulary() -> dict[str, tuple[str, str | None]]:
    """word -> (kind, value) for every word parse_caption understands."""
    vocab: dict[str, tuple[str, str | None]] = {}
    vocab.update({c: ("color", c) for c in COLORS})
    vocab.update({b: ("background", b) for b in BACKGROUNDS})
    vocab["grey"] = ("background", "gray")
    vocab.update({w: ("shape", s) for s, words in SHAPE_WORDS.items() for w in words})
    vocab.update({w: ("size", "small") for w in ("small", "little", "tiny")})
    vocab.update({w: ("size", "large") for w in ("large", "big")})
    for d in ("left", "right", "up", "down"):
        vocab.update({w: ("direction", d) for w in (d, d + "ward", d + "wards")})
    vocab.update({w: ("verb", None) for w in MOVE_VERBS + (
        "moves", "drifts", "slides", "goes", "heading", "travelling", "traveling", "staying", "stays")})
    vocab.update({w: ("still", "still") for w in ("still", "resting", "rests", "stationary", "static",
                                                  "motionless")})
    vocab["not"] = ("not", None)
    return vocab


STOPWORDS = frozenset("a an the and with on over against background backdrop to of in is "
                      "while another its".split())


def parse_caption(text: str) -> SceneQuery:
    """What a prompt asks for: one ObjectQuery per object mention, the background if named,
    and the words outside the world. A colour, size or shape word after a complete noun
    phrase starts a new mention; motion words belong to the latest mention."""
    vocab = _vocabulary()
    mentions: list[dict[str, str | None]] = []
    background, unknown, negate = None, [], False
    for word in re.findall(r"[a-z]+", text.lower()):
        if word in STOPWORDS:
            continue
        kind, value = vocab.get(word, (None, None))
        if kind is None:
            unknown.append(word)
        elif kind == "background":
            background = value
        elif kind in ("color", "size", "shape"):
            cur = mentions[-1] if mentions else None
            if cur is None or cur["shape"] or cur["motion"] or cur[kind]:
                mentions.append(dict(color=None, shape=None, motion=None, size=None))
            mentions[-1][kind] = value
        elif kind != "not":
            if not mentions:
                mentions.append(dict(color=None, shape=None, motion=None, size=None))
            cur = mentions[-1]
            if kind == "still" or (kind == "verb" and negate):  # "not moving" is still
                cur["motion"] = "still"
            elif kind == "direction" and cur["motion"] is None:
                cur["motion"] = value
        negate = kind == "not"
    return SceneQuery(tuple(ObjectQuery(**m) for m in mentions), background, tuple(unknown))


# --------------------------------------------------------------------------- stream

@dataclass(frozen=True)
class Sample:
    clip: np.ndarray  # (N, H, W, 3) uint8
    caption: str
    scene: SceneSpec
    fps: int


def stream(seed: int, sizes: tuple[tuple[int, int], ...] = ((112, 64), (64, 64), (64, 112)),
           fps_choices: tuple[int, ...] = (8, 12, 24),
           durations: tuple[int, ...] = (1, 2, 3, 4)) -> Iterator[Sample]:
    """Endless seeded training samples; sizes are (width, height). Same seed, same stream."""
    rng = np.random.default_rng(seed)
    while True:
        width, height = _pick(rng, sizes)
        fps, seconds = _pick(rng, fps_choices), _pick(rng, durations)
        scene = sample_scene(rng, (width, height))
        clip = render(scene, width, height, fps, int(round(fps * seconds)))
        yield Sample(clip, caption(scene, rng), scene, fps)
