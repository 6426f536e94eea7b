"""The project's VBench: measures clips of the toy world (WORLD.md) with no learned model.

`analyze` reads every frame the way WORLD.md says: background = mode of the border
pixels; object pixels = far from the background; connected components; each object's
palette colour by pixel vote, its shape by the fill ratio of its bounding box (square 1,
circle 0.79, triangle 0.5; a triangle also by the skewness of its vertical profile, which
blur leaves alone), its centroid and size; over the clip each colour's track gives
motion, persistence and coherence (teleports: frame-to-frame jumps far beyond the world's
speed; split frames: the colour in another piece far away). `match` compares that with what a prompt asks for.
The metrics of DESIGN.md section 7 (loop seam, blend fidelity, PSNR, flicker) follow.

Measurements are sub-pixel: a pixel's coverage alpha is its projection on the segment
from the background colour to the object's colour, so anti-aliased or mp4-blurred edges
count by how much of the object they hold, and small objects (12 px) keep their shape.

`analyze`, `match` and the clip metrics take a clip as an array (N, H, W, 3) uint8 or as a
path to a video (read through engine.video_io, imported only then).
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

import numpy as np

from engine.backends.toy.world import (BACKGROUNDS, COLORS, SPEED, ObjectQuery, SceneQuery,
                                       parse_caption)

BG_NAMES = tuple(BACKGROUNDS)
COLOR_NAMES = tuple(COLORS)
# 8-connectivity as the four "forward" neighbours (dy, dx); each edge is found once.
_FORWARD = ((0, 1), (1, -1), (1, 0), (1, 1))
_AROUND = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


@dataclass(frozen=True)
class Thresholds:
    """Every decision boundary of the judge, each with margin for mp4 artefacts."""
    # Object pixel: farther from the background than this fraction of the distance from
    # that background to its nearest object colour (>= 37 RGB units for every pair).
    fg_fraction: float = 0.4
    # Border pixel counts toward the measured background only this close to its palette entry.
    bg_radius: float = 40.0
    # Smallest object kept, in short-side^2: a quarter of a small circle (0.031).
    min_area: float = 0.008
    # A component holding two colours each with this share is two touching objects.
    split_share: float = 0.25
    # Fill ratio of the sub-pixel bounding box: triangle 0.5 | circle 0.785 | square 1;
    # mp4 blur raises a small triangle's to 0.69 (its apex fades), hence also the skewness
    # of the vertical profile: triangle pointing up -0.56 (-0.46 in mp4) | others 0 (+-0.05).
    triangle_below: float = 0.62
    triangle_skew: float = -0.25
    square_above: float = 0.90
    # Largest bounding-box side over the short side: small 0.20 | large 0.35.
    large_above: float = 0.275
    # Median speed in units of the world's speed (a quarter of the frame per second).
    still_below: float = 0.3
    # A colour counts as an object of the clip when present in this fraction of frames.
    present: float = 0.5
    # Teleport: a frame-to-frame centroid jump beyond this many times the world's largest
    # step (its speed along the frame's long side) plus this share of the short side for jitter.
    teleport_factor: float = 3.0
    teleport_slack: float = 0.05
    # Split frame: another piece of the object's colour whose centroid lies farther from the
    # largest piece's than this many times the largest piece's box side.
    split_far: float = 1.0


@dataclass(frozen=True, eq=False)  # a generated __eq__ would compare numpy arrays
class ObjectTrack:
    """One object, tracked by its palette colour through the clip."""
    color: str
    shape: str        # majority of per-frame shapes (frames not touching another object)
    size: str         # "small" | "large", majority
    motion: str       # left | right | up | down | still
    persistence: float  # fraction of frames where it is found
    speed: float      # median speed along its main axis, 1.0 = the world's speed
    fill: float       # median fill ratio of the bounding box
    skew: float       # median vertical skewness: about -0.56 for a triangle pointing up, 0 else
    extent: float     # median largest box side over the short side
    centroids: np.ndarray = field(repr=False)  # (N, 2) (x, y) as fractions; NaN where absent
    shapes: tuple[str | None, ...] = field(repr=False, default=())  # per frame
    teleports: int = 0      # steps between consecutive frames (both found) that jump far beyond the world's speed
    steps: int = 0          # such steps looked at
    split_frames: int = 0   # frames where the colour is also found in another piece far away

    def to_dict(self) -> dict:
        d = asdict(self)
        d["centroids"] = [[None if np.isnan(v) else round(float(v), 4) for v in xy]
                          for xy in self.centroids]
        d["shapes"] = list(self.shapes)
        return d


@dataclass(frozen=True, eq=False)
class ClipReport:
    width: int
    height: int
    fps: float
    n_frames: int
    background: str                       # mode of the per-frame backgrounds
    frame_backgrounds: tuple[str, ...]    # (N,)
    objects: tuple[ObjectTrack, ...]      # one per colour found, most persistent first

    def track(self, color: str) -> ObjectTrack | None:
        return next((o for o in self.objects if o.color == color), None)

    def to_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k != "objects"}
        d["frame_backgrounds"] = list(self.frame_backgrounds)
        d["objects"] = [o.to_dict() for o in self.objects]
        return d


# --------------------------------------------------------------------------- loading

def _frames(clip) -> np.ndarray:
    """An array clip as is, or a video path read through engine.video_io. (N, H, W, 3) uint8"""
    if isinstance(clip, (str, os.PathLike)):
        from engine.video_io import read_video  # lazy: the judge on arrays needs no video stack
        clip = read_video(clip)
    clip = np.asarray(clip)
    assert clip.ndim == 4 and clip.shape[-1] == 3, f"expected (N, H, W, 3), got {clip.shape}"
    assert clip.dtype == np.uint8, f"expected uint8 frames, got {clip.dtype}"
    return clip


def _fps(clip, fps: float | None) -> float:
    if fps is None and isinstance(clip, (str, os.PathLike)):
        from engine.video_io import probe
        fps = probe(clip).fps
    assert fps is not None and fps > 0, "fps is needed for an array clip"
    return float(fps)


def _palettes() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Background palette (4, 3), object palette (6, 3), foreground distance per background (4,)."""
    bg = np.array(list(BACKGROUNDS.values()), np.float32)
    obj = np.array(list(COLORS.values()), np.float32)
    nearest = np.linalg.norm(bg[:, None] - obj[None], axis=-1).min(axis=1)
    return bg, obj, nearest


# --------------------------------------------------------------------------- per frame

def _backgrounds(clip: np.ndarray, th: Thresholds) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: background palette index (N,) and measured background colour (N, 3).

    The mode of the border pixels' nearest palette entries names it; the mean of the
    border pixels near that entry measures it, so a shifted mp4 colour is followed.
    """
    bg, _, _ = _palettes()
    border = np.concatenate([clip[:, 0], clip[:, -1], clip[:, 1:-1, 0], clip[:, 1:-1, -1]],
                            axis=1).astype(np.float32)                        # (N, P, 3)
    diff = border[:, :, None] - bg                                            # (N, P, 4, 3)
    dist = np.sqrt(np.einsum("npbc,npbc->npb", diff, diff))                   # (N, P, 4)
    nearest = dist.argmin(-1)                                                 # (N, P)
    label = (nearest[..., None] == np.arange(len(bg))).sum(1).argmax(1)       # (N,)
    near = (nearest == label[:, None]) & (dist.min(-1) < th.bg_radius)        # (N, P)
    count = near.sum(1, keepdims=True)
    mean = (border * near[..., None]).sum(1) / np.maximum(count, 1)           # (N, 3)
    return label, np.where(count > 0, mean, bg[label]).astype(np.float32)


def _alpha(pix: np.ndarray, back: np.ndarray, color: np.ndarray) -> np.ndarray:
    """Coverage of each pixel on the segment back -> color, unclipped; all (M, 3). (M,)"""
    e = color - back
    return ((pix - back) * e).sum(-1) / np.maximum((e * e).sum(-1), 1e-6)


def _palette_labels(pix: np.ndarray, back: np.ndarray) -> np.ndarray:
    """Nearest object colour of each pixel (M,) by distance to the segment background ->
    colour, so that a half-covered edge pixel still votes for its own colour.

    pix, back: (M, 3). With v = pix - back and e = colour - back, the squared distance
    to the segment is |v|^2 - 2 a v.e + a^2 |e|^2 at the clipped coverage a = v.e / |e|^2.
    """
    _, obj, _ = _palettes()
    v = pix - back                                                            # (M, 3)
    ve = v @ obj.T - (v * back).sum(1, keepdims=True)                         # (M, 6)
    ee = (obj * obj).sum(1) - 2 * back @ obj.T + (back * back).sum(1, keepdims=True)  # (M, 6)
    a = np.clip(ve / np.maximum(ee, 1e-6), 0, 1)
    return (a * (a * ee - 2 * ve)).argmin(1)                                  # |v|^2 is common


def _components(idx: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """8-connected components of the pixels at flat indices idx of an (N, H, W) grid.

    Vectorised union-find: hook the larger root of every edge onto the smaller, then
    jump pointers, until no edge joins two roots. Returns a root per pixel. (M,)
    """
    n, h, w = shape
    pos = np.full(n * h * w, -1, np.int64)
    pos[idx] = np.arange(len(idx))
    y, x = (idx // w) % h, idx % w
    us, vs = [], []
    for dy, dx in _FORWARD:
        ok = (y + dy < h) & (x + dx >= 0) & (x + dx < w)
        other = pos[idx[ok] + dy * w + dx]
        us.append(np.flatnonzero(ok)[other >= 0])
        vs.append(other[other >= 0])
    u, v = np.concatenate(us), np.concatenate(vs)
    root = np.arange(len(idx))
    while True:
        ru, rv = root[u], root[v]
        if (ru == rv).all():
            return root
        np.minimum.at(root, np.maximum(ru, rv), np.minimum(ru, rv))
        while (root[root] != root).any():
            root = root[root]


def _objects(comp: np.ndarray, label: np.ndarray, min_px: float, th: Thresholds):
    """Objects of the components: one per component, or one per colour where a component
    holds two colours with a real share each (touching objects).

    comp (M,) component index 0..K-1, label (M,) palette index. Returns object per pixel
    (M,) (-1: dropped), colour per object (O,), clean per object (O,) bool.
    """
    k, c = comp.max() + 1, len(COLOR_NAMES)
    votes = np.bincount(comp * c + label, minlength=k * c).reshape(k, c)      # (K, 6)
    size = votes.sum(1)
    table = np.full((k, c), -1, np.int64)
    colors, clean = [], []
    for i in np.flatnonzero(size >= min_px):
        strong = np.flatnonzero(votes[i] >= max(th.split_share * size[i], min_px))
        if len(strong) <= 1:
            table[i, :] = len(colors)
            colors.append(int(votes[i].argmax()))
            clean.append(True)
            continue
        for col in strong:
            table[i, col] = len(colors)
            colors.append(int(col))
            clean.append(False)
    return table[comp, label], np.array(colors, np.int64), np.array(clean, bool)


def _ring(idx: np.ndarray, obj: np.ndarray, fg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Background pixels touching an object: its faint anti-aliased edge, below the
    foreground threshold but part of its coverage. Returns flat indices (R,), owners (R,)."""
    n, h, w = fg.shape
    y, x = (idx // w) % h, idx % w
    rings, owners = [], []
    for dy, dx in _AROUND:
        ok = (y + dy >= 0) & (y + dy < h) & (x + dx >= 0) & (x + dx < w)
        other = idx[ok] + dy * w + dx
        bg = ~fg.ravel()[other]
        rings.append(other[bg])
        owners.append(obj[ok][bg])
    ring, first = np.unique(np.concatenate(rings), return_index=True)
    return ring, np.concatenate(owners)[first]


@dataclass(frozen=True)
class _Detections:
    """Objects found in all frames, as parallel arrays over objects (O,)."""
    frame: np.ndarray
    color: np.ndarray
    clean: np.ndarray
    area: np.ndarray      # sum of coverage, px
    cx: np.ndarray        # coverage-weighted centroid, px
    cy: np.ndarray
    ext_x: np.ndarray     # sub-pixel bounding box sides, px
    ext_y: np.ndarray
    skew: np.ndarray      # skewness of the vertical mass profile

    @staticmethod
    def none() -> _Detections:
        i, f = np.zeros(0, np.int64), np.zeros(0)
        return _Detections(i, i, np.zeros(0, bool), f, f, f, f, f, f)


def _measure(clip: np.ndarray, pix_idx: np.ndarray, obj: np.ndarray, colors: np.ndarray,
             back: np.ndarray) -> dict[str, np.ndarray]:
    """Coverage-weighted area, centroid and sub-pixel box sides per object (O,) each.

    Coverage is scaled per object by its interior's coverage, so a uniformly shifted
    mp4 colour neither shrinks the area nor the box.
    """
    n, h, w, _ = clip.shape
    o_count = len(colors)
    frame = pix_idx // (h * w)
    pix = clip.reshape(-1, 3)[pix_idx].astype(np.float32)
    _, palette, _ = _palettes()
    raw = _alpha(pix, back[frame], palette[colors[obj]])                      # (P,)
    core = raw >= 0.8
    scale = np.bincount(obj, raw * core, o_count) / np.maximum(np.bincount(obj, core, o_count), 1)
    scale = np.where(scale > 0.5, scale, 1.0)
    a = np.clip(raw / scale[obj], 0, 1)
    y, x = (pix_idx // w) % h, pix_idx % w
    area = np.bincount(obj, a, o_count)
    cols, rows = np.zeros((o_count, w)), np.zeros((o_count, h))
    np.maximum.at(cols, (obj, x), a)
    np.maximum.at(rows, (obj, y), a)
    safe = np.maximum(area, 1e-6)
    cx = np.bincount(obj, a * (x + 0.5), o_count) / safe
    cy = np.bincount(obj, a * (y + 0.5), o_count) / safe
    dy = y + 0.5 - cy[obj]
    skew = np.bincount(obj, a * dy ** 3, o_count) / safe / np.maximum(
        np.bincount(obj, a * dy ** 2, o_count) / safe, 1e-6) ** 1.5
    return dict(area=area, cx=cx, cy=cy, ext_x=cols.sum(1), ext_y=rows.sum(1), skew=skew)


def _detect(clip: np.ndarray, back_label: np.ndarray, back: np.ndarray, th: Thresholds) -> _Detections:
    """Every object in every frame: foreground, components, colours, coverage measures."""
    n, h, w, _ = clip.shape
    _, _, nearest = _palettes()
    diff = clip.astype(np.float32) - back[:, None, None]                      # (N, H, W, 3)
    far = (th.fg_fraction * nearest[back_label]) ** 2                         # (N,)
    fg = np.einsum("nhwc,nhwc->nhw", diff, diff) > far[:, None, None]         # (N, H, W)
    idx = np.flatnonzero(fg)                                                  # (M,)
    if len(idx) == 0:
        return _Detections.none()
    frame = idx // (h * w)
    label = _palette_labels(clip.reshape(-1, 3)[idx].astype(np.float32), back[frame])
    _, comp = np.unique(_components(idx, fg.shape), return_inverse=True)
    obj, colors, clean = _objects(comp, label, th.min_area * min(h, w) ** 2, th)
    keep = obj >= 0
    idx, obj = idx[keep], obj[keep]
    ring, ring_obj = _ring(idx, obj, fg)
    m = _measure(clip, np.concatenate([idx, ring]), np.concatenate([obj, ring_obj]), colors, back)
    obj_frame = np.zeros(len(colors), np.int64)
    obj_frame[obj] = idx // (h * w)
    return _Detections(obj_frame, colors, clean, **m)


# --------------------------------------------------------------------------- over the clip

def _shape(fill: np.ndarray, skew: np.ndarray, th: Thresholds) -> np.ndarray:
    """Shape name per object (O,): a triangle by its mass piled towards the base (blur
    moves a thin apex's box edge but not the third moment) or its low fill; else square
    or circle by the fill ratio of the box."""
    triangle = (skew < th.triangle_skew) | (fill < th.triangle_below)
    return np.where(triangle, "triangle", np.where(fill < th.square_above, "circle", "square"))


def _majority(values) -> str | None:
    values = list(values)
    return max(set(values), key=lambda v: (values.count(v), v)) if values else None


def _motion(xy: np.ndarray, use: np.ndarray, fps: float, width: int, height: int,
            th: Thresholds) -> tuple[str, float]:
    """Direction of a centroid path (N, 2) px over the frames in `use` (N,), and its speed.

    The median per-step speed ignores a bounce and a few occluded frames; the direction
    is the sign of the median velocity in the first second (which the world keeps free
    of bounces), falling back on the whole clip.
    """
    f = np.flatnonzero(use)
    if len(f) < 2:
        return "still", 0.0
    v = np.diff(xy[f], axis=0) / np.diff(f)[:, None] * fps                   # (S, 2) px/s
    v = v / (SPEED * np.array([width, height]))                              # 1.0 = world speed
    speed = np.median(np.abs(v), axis=0)                                     # (2,)
    axis = int(speed.argmax())
    if speed[axis] < th.still_below:
        return "still", float(speed[axis])
    first = v[f[:-1] - f[0] < fps, axis]
    sign = np.sign(np.median(first)) or np.sign(np.median(v[:, axis])) or 1.0
    names = (("left", "right"), ("up", "down"))[axis]
    return names[int(sign > 0)], float(speed[axis])


def _coherence(det: _Detections, pieces: np.ndarray, main: np.ndarray, fps: float, width: int, height: int,
               th: Thresholds) -> tuple[int, int, int]:
    """(teleports, steps, split frames) of one colour: pieces (P,) all its detections, main (M,) the
    largest per frame in frame order. A rendered object moves at most the world's speed and is one piece."""
    frames = det.frame[main]
    xy = np.stack([det.cx[main], det.cy[main]], axis=1)                      # (M, 2) px
    step = np.flatnonzero(np.diff(frames) == 1)                             # consecutive frames only
    jump = np.linalg.norm(xy[step + 1] - xy[step], axis=1)
    limit = th.teleport_factor * SPEED * max(width, height) / fps + th.teleport_slack * min(width, height)
    split = 0
    for m in main:
        others = pieces[(det.frame[pieces] == det.frame[m]) & (pieces != m)]
        gap = np.hypot(det.cx[others] - det.cx[m], det.cy[others] - det.cy[m])
        split += bool((gap > th.split_far * max(det.ext_x[m], det.ext_y[m])).any())
    return int((jump > limit).sum()), len(step), split


def _track(det: _Detections, color: int, n: int, fps: float, width: int, height: int,
           th: Thresholds) -> ObjectTrack:
    """The object of one colour through the clip (the largest one per frame)."""
    short = min(width, height)
    sel = np.flatnonzero(det.color == color)
    sel = pieces = sel[np.argsort(-det.area[sel], kind="stable")]
    frames, first = np.unique(det.frame[sel], return_index=True)
    sel = sel[first]                                                        # largest per frame
    teleports, steps, split = _coherence(det, pieces, sel, fps, width, height, th)
    fill = det.area[sel] / np.maximum(det.ext_x[sel] * det.ext_y[sel], 1e-6)
    extent = np.maximum(det.ext_x[sel], det.ext_y[sel]) / short
    clean = det.clean[sel]
    skew = det.skew[sel]
    shapes = _shape(fill, skew, th)
    voters = clean if clean.any() else np.ones_like(clean)
    xy = np.full((n, 2), np.nan)
    xy[frames] = np.stack([det.cx[sel], det.cy[sel]], axis=1)
    use = np.zeros(n, bool)
    use[frames] = True
    if clean.sum() >= max(2, len(frames) / 3):  # occluded frames move the centroid: skip them
        use[frames[~clean]] = False
    motion, speed = _motion(xy, use, fps, width, height, th)
    per_frame = [None] * n
    for f, s in zip(frames, shapes):
        per_frame[f] = str(s)
    return ObjectTrack(
        color=COLOR_NAMES[color], shape=_majority(shapes[voters].tolist()),
        size=_majority(np.where(extent > th.large_above, "large", "small").tolist()),
        motion=motion, persistence=len(frames) / n, speed=round(speed, 4),
        fill=round(float(np.median(fill[voters])), 4),
        skew=round(float(np.median(skew[voters])), 4), extent=round(float(np.median(extent)), 4),
        centroids=xy / np.array([width, height]), shapes=tuple(per_frame),
        teleports=teleports, steps=steps, split_frames=split)


def analyze(clip, fps: float | None = None, th: Thresholds = Thresholds()) -> ClipReport:
    """Read a clip of the toy world: background, and per colour a tracked object.

    clip: (N, H, W, 3) uint8 or a video path (then fps defaults to the file's).
    """
    fps = _fps(clip, fps)
    clip = _frames(clip)
    n, h, w, _ = clip.shape
    # 1. background per frame; 2. objects per frame; 3. one track per colour.
    back_label, back = _backgrounds(clip, th)
    det = _detect(clip, back_label, back, th)
    tracks = [_track(det, int(c), n, fps, w, h, th) for c in np.unique(det.color)]
    tracks.sort(key=lambda t: -t.persistence)
    names = [BG_NAMES[i] for i in back_label]
    return ClipReport(w, h, fps, n, _majority(names), tuple(names), tuple(tracks))


# --------------------------------------------------------------------------- prompts

def _check(query: ObjectQuery, track: ObjectTrack | None) -> dict:
    """Per asked attribute: True / False; None where the prompt does not ask."""
    out = {"asked": {k: getattr(query, k) for k in ("color", "shape", "motion", "size")},
           "found": None if track is None else {k: getattr(track, k) for k in
                                                ("color", "shape", "motion", "size", "persistence",
                                                 "teleports", "steps", "split_frames")}}
    for k, asked in out["asked"].items():
        out[k] = None if asked is None else (track is not None and getattr(track, k) == asked)
    return out


def _coherence_of(query: ObjectQuery, track: ObjectTrack | None, report: ClipReport) -> dict:
    """A prompted object's coherence: its track, or else any track of its colour however brief
    (an object that pops in for a few frames is present that much, not absent)."""
    if track is None and query.color is not None:
        track = report.track(query.color)
    if track is None:
        return {"presence": 0.0, "teleports": 0, "steps": 0, "split_frames": 0, "frames_found": 0}
    return {"presence": track.persistence, "teleports": track.teleports, "steps": track.steps,
            "split_frames": track.split_frames, "frames_found": round(track.persistence * report.n_frames)}


def _assign(query: SceneQuery, tracks: list[ObjectTrack]) -> list[ObjectTrack | None]:
    """A track per mentioned object: by colour when named, else the best-agreeing one left."""
    free = list(tracks)
    out: list[ObjectTrack | None] = [None] * len(query.objects)
    order = sorted(range(len(query.objects)), key=lambda i: query.objects[i].color is None)
    for i in order:
        q = query.objects[i]
        cands = [t for t in free if q.color is None or t.color == q.color]
        if cands:
            out[i] = max(cands, key=lambda t: _agreement(q, t))
            free.remove(out[i])
    return out


def _agreement(query: ObjectQuery, track: ObjectTrack) -> int:
    return sum(getattr(query, k) == getattr(track, k) for k in ("shape", "motion", "size"))


def match(clip, prompt: str, fps: float | None = None, th: Thresholds = Thresholds()) -> dict:
    """How well a clip shows what a prompt asks for. JSON-serialisable.

    Per mentioned object: each named attribute True/False (None if not named); the
    background likewise, and its coherence (presence, teleports, split frames); `extra` lists objects in the clip the prompt does not mention;
    `unknown` the prompt's words outside the world (not judged). `all_ok` is true when
    something was judged, every judged attribute holds and there is no extra object.
    """
    report = analyze(clip, fps, th)
    query = parse_caption(prompt)
    tracks = [t for t in report.objects if t.persistence >= th.present]
    assigned = _assign(query, tracks)
    objects = [{**_check(q, t), "coherence": _coherence_of(q, t, report)} for q, t in zip(query.objects, assigned)]
    asked_bg = query.background
    background = {"asked": asked_bg, "found": report.background,
                  "ok": None if asked_bg is None else asked_bg == report.background}
    named = {t.color for t in assigned if t is not None}
    extra = [t.color for t in tracks if t.color not in named]
    verdicts = [o[k] for o in objects for k in ("color", "shape", "motion", "size")] + [background["ok"]]
    judged = [v for v in verdicts if v is not None]
    return {"prompt": prompt, "objects": objects, "background": background, "extra": extra,
            "unknown": list(query.unknown), "all_ok": bool(judged) and all(judged) and not extra}


# --------------------------------------------------------------------------- metrics

def _mad(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute pixel difference of two frames (or stacks), 0-255 units."""
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


def _frame_mads(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mean absolute difference per frame of two stacks (N, H, W, 3). (N,)"""
    return np.abs(x.astype(np.int16) - y.astype(np.int16)).mean(axis=(1, 2, 3))


def loop_seam_ratio(clip) -> float:
    """D(last, first) / median_f D(f, f+1), D = mean abs pixel difference.

    About 1 for a clip that loops seamlessly; >> 1 where the loop jumps. A clip that
    never changes scores 1 (seamless), a still clip with a jump scores inf.
    """
    clip = _frames(clip)
    assert len(clip) >= 2, "a loop needs at least two frames"
    seam = _mad(clip[-1], clip[0])
    steady = float(np.median(_frame_mads(clip[1:], clip[:-1])))
    if steady == 0:
        return 1.0 if seam == 0 else float("inf")
    return seam / steady


def blend_fidelity(clip, a, b, mix) -> tuple[np.ndarray, float]:
    """How closely a blend follows its drawn curve.

    Per frame f: d(f, A) / (d(f, A) + d(f, B)) with d the mean abs difference, which is
    exactly m for a linear crossfade (1 - m) A + m B. mix: (N,) the drawn curve (or a
    scalar). Returns (per-frame measured mix (N,), mean abs error against mix); frames
    where A equals B are NaN and left out of the error.
    """
    clip, a, b = _frames(clip), _frames(a), _frames(b)
    assert clip.shape == a.shape == b.shape, f"shapes differ: {clip.shape} {a.shape} {b.shape}"
    da, db = _frame_mads(clip, a), _frame_mads(clip, b)
    total = da + db
    measured = np.where(total > 0, da / np.where(total > 0, total, 1), np.nan)   # (N,)
    target = np.broadcast_to(np.asarray(mix, np.float64), measured.shape)
    return measured, float(np.nanmean(np.abs(measured - target)))


def psnr(a, b) -> float:
    """Peak signal-to-noise ratio in dB of two frames or clips (uint8); inf if identical."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, f"shapes differ: {a.shape} {b.shape}"
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def flicker(clip) -> float:
    """Temporal flicker: mean abs difference of consecutive frames' global mean intensity
    (0-255 units). Objects moving at constant size leave it near 0; a brightness pump or
    frames flashing between colours raise it. Not a high-pass: slow fades count a little."""
    clip = _frames(clip)
    if len(clip) < 2:
        return 0.0
    means = clip.reshape(len(clip), -1).mean(axis=1, dtype=np.float64)       # (N,)
    return float(np.abs(np.diff(means)).mean())
