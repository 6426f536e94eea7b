"""Timeline: the storyboard as pure data, with a JSON round-trip and one validation pass.

A timeline is what a person composes: a span of `duration_s` seconds at `fps`, a frame
shape, a seed and cards. Cards say what each moment should show:

- `TextCard(start_s, end_s, text)`: the prompt for that span.
- `ImageCard(at_s, path, strength)`: an image pinned at one moment.
- `VideoCard(start_s, end_s, path, source_in_s, source_out_s, strength)`: a clip placed on
  a span (retimed when the source span and the card span differ in length).

`strength` is how much a card is kept: 1 = injected as is, 0 = ignored, between = the
model may repaint it by `1 - strength`. An optional `weight` curve on text and video cards
fades the card in and out over its span (used by blend). `noise` overrides the whole
partial-noise curve, and `assemble` says how the output is cut together from generated
time and source clips (loop, extend, re-cut); when absent the output is the generated span.

Validation happens once, at load (`Timeline.from_dict` / `load`), with messages that name
the card and the field: `cards[2].end_s: must be after start_s (1.5 s)`.
"""
from __future__ import annotations

import json
import os
import secrets
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path

from engine.params import PARAMS, InputError, check

FORMAT_VERSION = 1
EPS = 1e-6


# ----------------------------------------------------------------------------- curves
@dataclass(frozen=True)
class Curve:
    """A piecewise-linear function on [0, 1] -> [0, 1]; x is a fraction of the span it lives on."""
    points: tuple[tuple[float, float], ...]

    def __call__(self, x):
        import numpy as np
        xs, ys = zip(*self.points)
        return np.interp(x, xs, ys)

    @classmethod
    def parse(cls, value, field: str = "curve") -> "Curve":
        """From `"0:0,0.4:0,0.6:1,1:1"`, `[[0, 0], [1, 1]]` or a number (a flat curve)."""
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [[0.0, value], [1.0, value]]
        if isinstance(value, str):
            try:
                value = [[float(v) for v in p.split(":")] for p in value.replace(" ", "").split(",") if p]
            except ValueError:
                raise InputError(f"{field}: write points as time:value pairs, e.g. 0:0,0.5:1,1:1") from None
        if not isinstance(value, (list, tuple)) or not value:
            raise InputError(f"{field}: expected a list of [time, value] points")
        pts = []
        for i, p in enumerate(value):
            if not isinstance(p, (list, tuple)) or len(p) != 2:
                raise InputError(f"{field}[{i}]: expected a [time, value] pair, got {p!r}")
            x, y = (check("strength", v, f"{field}[{i}]") for v in p)  # both in [0, 1], finite
            if pts and x < pts[-1][0]:
                raise InputError(f"{field}[{i}]: times must not decrease ({x} after {pts[-1][0]})")
            pts.append((float(x), float(y)))
        if len(pts) == 1:
            pts.append((1.0, pts[0][1]))
        return cls(tuple(pts))

    def to_json(self) -> list:
        return [list(p) for p in self.points]


# ----------------------------------------------------------------------------- cards
@dataclass
class TextCard:
    start_s: float
    end_s: float
    text: str
    weight: Curve | None = None  # gate multiplier over the span (blend); None = 1
    kind = "text"


@dataclass
class ImageCard:
    at_s: float
    path: str
    strength: float = 1.0
    kind = "image"


@dataclass
class VideoCard:
    start_s: float
    end_s: float
    path: str
    source_in_s: float = 0.0
    source_out_s: float | None = None  # None: source_in_s + the card's length (no retiming)
    strength: float = 1.0
    weight: Curve | None = None  # mixing weight over the span when video cards overlap (blend)
    kind = "video"

    @property
    def source_end_s(self) -> float:
        if self.source_out_s is not None:
            return self.source_out_s
        return self.source_in_s + (self.end_s - self.start_s)


Card = TextCard | ImageCard | VideoCard
CARD_TYPES = {c.kind: c for c in (TextCard, ImageCard, VideoCard)}


@dataclass
class Piece:
    """One cut of the output: `source` is "generated" (timeline time) or a media path (its own time)."""
    source: str
    in_s: float
    out_s: float


# ----------------------------------------------------------------------------- timeline
@dataclass
class Timeline:
    duration_s: float = PARAMS["duration_s"].default
    fps: float = PARAMS["fps"].default
    aspect: str = PARAMS["aspect"].default
    resolution: int = PARAMS["resolution"].default
    seed: int | None = None   # None: a fresh seed each time it is made (fresh_seed); a number reproduces it
    variations: int = PARAMS["variations"].default
    preset: str | None = None
    prompt: str = ""
    negative_prompt: str = ""
    fit: str = PARAMS["fit"].default
    crossfade_s: float = PARAMS["crossfade_s"].default
    noise: Curve | None = None  # explicit partial-noise curve over the whole timeline
    cards: list = field(default_factory=list)
    assemble: list[Piece] | None = None
    base_dir: str = field(default=".", compare=False, repr=False)  # where relative paths start

    # -- geometry
    @property
    def aspect_ratio(self) -> tuple[int, int]:
        return parse_aspect(self.aspect)

    @property
    def n_frames(self) -> int:
        return max(1, round(self.duration_s * self.fps))

    def resolve(self, path: str) -> str:
        """A card's path, relative paths taken from the storyboard's folder."""
        p = Path(os.path.expanduser(path))
        return str(p if p.is_absolute() else Path(self.base_dir) / p)

    def media_paths(self) -> list[str]:
        paths = [c.path for c in self.cards if c.kind != "text"]
        paths += [p.source for p in self.assemble or [] if p.source != "generated"]
        return paths

    # -- JSON
    def to_dict(self) -> dict:
        d = {"version": FORMAT_VERSION}
        for f in fields(self):
            if f.name in ("cards", "assemble", "noise", "base_dir"):
                continue
            d[f.name] = getattr(self, f.name)
        d["noise"] = self.noise.to_json() if self.noise else None
        d["cards"] = [_card_to_dict(c) for c in self.cards]
        d["assemble"] = [asdict(p) for p in self.assemble] if self.assemble is not None else None
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: dict, base_dir: str = ".", check_media: bool = True) -> "Timeline":
        """Build and validate; raises InputError naming the field."""
        if not isinstance(d, dict):
            raise InputError("storyboard: expected a JSON object at the top level")
        d = dict(d)
        version = d.pop("version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise InputError(f"version: storyboard format {version!r} is not supported; this cinepatch reads {FORMAT_VERSION}")
        _reject_unknown(d, {f.name for f in fields(cls)} - {"base_dir"}, "storyboard")
        cards = d.pop("cards", [])
        if not isinstance(cards, list):
            raise InputError("cards: expected a list of cards")
        assemble = d.pop("assemble", None)
        noise = d.pop("noise", None)
        tl = cls(**d, base_dir=str(base_dir))
        tl.cards = [_card_from_dict(c, f"cards[{i}]") for i, c in enumerate(cards)]
        tl.noise = Curve.parse(noise, "noise") if noise is not None else None
        tl.assemble = _pieces_from_list(assemble) if assemble is not None else None
        validate(tl, check_media=check_media)
        return tl

    @classmethod
    def from_json(cls, text: str, base_dir: str = ".", check_media: bool = True) -> "Timeline":
        return cls.from_dict(parse_json(text), base_dir, check_media)

    def replace(self, **changes) -> "Timeline":
        return replace(self, **changes)


def draw_seed(variations: int = 1) -> int:
    """A fresh random seed that leaves room for `variations` consecutive ones (variation k uses seed + k)."""
    return secrets.randbelow(PARAMS["seed"].max - max(1, int(variations)) + 2)


def fresh_seed(tl: Timeline) -> Timeline:
    """The seed rule, in one place: a timeline without a seed gets a fresh one (a new video each time), one
    with a seed keeps it (the same video again). Called where a timeline is about to be made into video, so
    what records it (a sidecar, the library) records the seed actually used."""
    return tl if tl.seed is not None else tl.replace(seed=draw_seed(tl.variations))


def parse_json(text: str, field: str = "storyboard"):
    """JSON text's value, or an InputError saying where it is malformed."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{field}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    except RecursionError:
        raise InputError(f"{field}: nested too deeply to be a storyboard") from None


def read_json(path: str | os.PathLike, field: str = "storyboard"):
    """A JSON file's value, or an InputError saying what is wrong with the file."""
    path = Path(path)
    try:
        return parse_json(path.read_text(encoding="utf-8"), field)
    except FileNotFoundError:
        raise InputError(f"{field}: {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{field}: {str(path)!r} cannot be read ({e.__class__.__name__})") from None


def load(path: str | os.PathLike, check_media: bool = True) -> Timeline:
    """Read a storyboard `.json`; relative media paths are taken from its folder."""
    return Timeline.from_dict(read_json(path), base_dir=str(Path(path).parent.resolve()), check_media=check_media)


def save(timeline: Timeline, path: str | os.PathLike, overwrite: bool = True) -> Path:
    """Write a storyboard atomically (temp name, then rename)."""
    from engine.files import atomic_write_text
    return atomic_write_text(Path(path), timeline.to_json() + "\n", overwrite=overwrite)


# ----------------------------------------------------------------------------- parsing helpers
def parse_aspect(aspect: str, field: str = "aspect") -> tuple[int, int]:
    """`"16:9"` -> (16, 9); any W:H of positive whole numbers with a ratio between 1:4 and 4:1."""
    try:
        w, h = (int(v) for v in str(aspect).split(":"))
    except ValueError:
        raise InputError(f"{field}: {aspect!r} is not an aspect; use 16:9, 1:1, 9:16 or W:H") from None
    if w <= 0 or h <= 0 or not 0.25 <= w / h <= 4.0:
        raise InputError(f"{field}: {aspect!r} is not allowed; width:height must be positive and between 1:4 and 4:1")
    return w, h


def _reject_unknown(d: dict, allowed: set[str], where: str):
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise InputError(f"{where}: unknown field {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}")


def _card_to_dict(card) -> dict:
    d = {"kind": card.kind}
    for f in fields(card):
        v = getattr(card, f.name)
        d[f.name] = v.to_json() if isinstance(v, Curve) else v
    return d


def _card_from_dict(d, where: str):
    if not isinstance(d, dict):
        raise InputError(f"{where}: expected an object with a 'kind'")
    d = dict(d)
    kind = d.pop("kind", None)
    if kind not in CARD_TYPES:
        raise InputError(f"{where}.kind: unknown card kind {kind!r}; allowed: text, image, video")
    cls = CARD_TYPES[kind]
    _reject_unknown(d, {f.name for f in fields(cls)}, where)
    required = [f.name for f in fields(cls) if f.default is MISSING]
    for name in required:
        if name not in d:
            raise InputError(f"{where}.{name}: missing (a {kind} card needs {', '.join(required)})")
    if d.get("weight") is not None:
        d["weight"] = Curve.parse(d["weight"], f"{where}.weight")
    return cls(**d)


def _pieces_from_list(items) -> list[Piece]:
    if not isinstance(items, list) or not items:
        raise InputError("assemble: expected a non-empty list of {source, in_s, out_s} pieces (or null)")
    out = []
    for i, p in enumerate(items):
        if not isinstance(p, dict):
            raise InputError(f"assemble[{i}]: expected an object with source, in_s, out_s")
        _reject_unknown(p, {"source", "in_s", "out_s"}, f"assemble[{i}]")
        try:
            out.append(Piece(**p))
        except TypeError:
            raise InputError(f"assemble[{i}]: needs source, in_s and out_s") from None
    return out


# ----------------------------------------------------------------------------- validation
def validate(tl: Timeline, check_media: bool = True) -> Timeline:
    """Check every field once; raise InputError naming the first bad one."""
    for name in ("duration_s", "fps", "resolution", "seed", "variations", "fit", "crossfade_s"):
        if not (name == "seed" and tl.seed is None):
            setattr(tl, name, check(name, getattr(tl, name)))
    parse_aspect(tl.aspect)
    for name in ("prompt", "negative_prompt"):
        if not isinstance(getattr(tl, name), str):
            raise InputError(f"{name}: expected text")
    if tl.preset is not None:
        from engine import presets
        if not isinstance(tl.preset, str):
            raise InputError(f"preset: expected a preset name; available: {', '.join(presets.available())}")
        presets.load(tl.preset)
    if tl.n_frames > 60 * 60 * 60:
        raise InputError(f"duration_s: {tl.duration_s} s at {tl.fps} fps is too many frames")
    if tl.seed is not None and tl.seed + tl.variations - 1 > PARAMS["seed"].max:  # variation k is made with seed + k
        raise InputError(f"seed: {tl.seed} + {tl.variations} variations passes the largest seed {PARAMS['seed'].max}")
    media = {}
    for i, card in enumerate(tl.cards):
        _validate_card(tl, card, f"cards[{i}]", media, check_media)
    _check_text_overlaps(tl)
    for i, p in enumerate(tl.assemble or []):
        _validate_piece(tl, p, f"assemble[{i}]", media, check_media)
    return tl


def _span(tl: Timeline, start, end, where: str):
    start = check("time_s", start, f"{where}.start_s")
    end = check("time_s", end, f"{where}.end_s")
    if end <= start + EPS:
        raise InputError(f"{where}.end_s: must be after start_s ({start} s), got {end}")
    if end > tl.duration_s + EPS:
        raise InputError(f"{where}.end_s: {end} s is past the end of the timeline ({tl.duration_s} s)")


def _validate_card(tl: Timeline, card, where: str, media: dict, check_media: bool):
    if card.kind == "text":
        _span(tl, card.start_s, card.end_s, where)
        if not isinstance(card.text, str) or not card.text.strip():
            raise InputError(f"{where}.text: a text card needs some text")
        return
    card.strength = check("strength", card.strength, f"{where}.strength")
    if not isinstance(card.path, str) or not card.path:
        raise InputError(f"{where}.path: expected the path of an image or video")
    if card.kind == "image":
        at = check("time_s", card.at_s, f"{where}.at_s")
        if at > tl.duration_s + EPS:
            raise InputError(f"{where}.at_s: {at} s is past the end of the timeline ({tl.duration_s} s)")
        if check_media:
            _probe(tl, card.path, f"{where}.path", media)
        return
    _span(tl, card.start_s, card.end_s, where)
    src_in = check("time_s", card.source_in_s, f"{where}.source_in_s")
    if card.source_out_s is not None:
        check("time_s", card.source_out_s, f"{where}.source_out_s")
        if card.source_out_s <= src_in + EPS:
            raise InputError(f"{where}.source_out_s: must be after source_in_s ({src_in} s)")
    if check_media:
        info = _probe(tl, card.path, f"{where}.path", media)
        if info.kind == "video":
            _within(info, tl, src_in, f"{where}.source_in_s", card.path, inclusive=False)
            _within(info, tl, card.source_end_s, f"{where}.source_out_s", card.path)


def _within(info, tl: Timeline, t: float, where: str, path: str, inclusive: bool = True):
    """A source time inside the clip (a PNG folder with no stored rate runs at the timeline's fps)."""
    fps = info.fps or tl.fps
    end = info.n_frames / fps
    if t > end + EPS or (not inclusive and t >= end - EPS):
        raise InputError(f"{where}: {t:g} s is past the end of {path!r} ({end:g} s)")


def _validate_piece(tl: Timeline, p: Piece, where: str, media: dict, check_media: bool):
    if not isinstance(p.source, str) or not p.source:
        raise InputError(f"{where}.source: expected \"generated\" or the path of a video")
    check("time_s", p.in_s, f"{where}.in_s")
    check("time_s", p.out_s, f"{where}.out_s")
    if p.out_s <= p.in_s + EPS:
        raise InputError(f"{where}.out_s: must be after in_s ({p.in_s} s)")
    if p.source == "generated":
        if p.out_s > tl.duration_s + EPS:
            raise InputError(f"{where}.out_s: {p.out_s} s is past the end of the timeline ({tl.duration_s} s)")
    elif check_media:
        info = _probe(tl, p.source, f"{where}.source", media)
        if info.kind == "video":
            _within(info, tl, p.out_s, f"{where}.out_s", p.source)


def _probe(tl: Timeline, path: str, where: str, cache: dict):
    from engine.video_io import probe  # media are checked here, once, with the card's name
    full = tl.resolve(path)
    if full not in cache:
        cache[full] = probe(full, field=where)
    return cache[full]


def _check_text_overlaps(tl: Timeline):
    """Text cards may overlap only when one of them has a weight curve that says how they mix."""
    texts = sorted((c.start_s, c.end_s, i, c) for i, c in enumerate(tl.cards) if c.kind == "text")
    pairs = ((a, b) for k, a in enumerate(texts) for b in texts[k + 1:])
    for a, b in pairs:
        if b[0] < a[1] - EPS and a[3].weight is None and b[3].weight is None:
            raise InputError(
                f"cards[{b[2]}].start_s: text cards {a[2]} and {b[2]} overlap ({b[0]:g}–{min(a[1], b[1]):g} s); "
                f"move one, or give one a weight curve to blend them")
