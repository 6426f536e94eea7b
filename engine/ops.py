"""Operations: each builds a Timeline (DESIGN.md §4); the engine does the rest.

| op          | timeline                                                                    |
| t2v         | one TextCard over the whole span                                            |
| i2v         | ImageCard at `at_s` (+ a TextCard over the span)                            |
| storyboard  | the person's own cards                                                      |
| remix       | VideoCard over the span with strength 1 - amount, + TextCard                |
| blend       | VideoCards A and B weighted 1 - mix and mix, TextCards weighted the same,   |
|             | a noise curve (default 0.9 * 4 m (1 - m): A and B kept, the middle repainted)|
| loop        | clip tail | bridge (generated) | clip head; output = head' + middle + tail' + |
|             | bridge, the loop point inside one decode ('= decoded); of a section's ends  |
| extend      | the clip's last (first) context seconds injected, the rest generated;       |
|             | output = clip + new part                                                    |
| interpolate | ImageCards at their moments, everything between generated                   |
| recut       | an assembly of source pieces only: no model                                 |
| upscale     | remix at a higher resolution with a small amount                            |

Every function checks its own arguments (InputError naming the argument).
"""
from __future__ import annotations

import math

from engine.params import PARAMS, InputError, check
from engine.timeline import Curve, ImageCard, Piece, TextCard, Timeline, VideoCard, validate


def _info(path: str, field: str):
    from engine.video_io import probe
    return probe(path, field=field)


def aspect_of(width: int, height: int) -> str:
    """`"16:9"` for 1280x720: the source's own shape, reduced."""
    g = math.gcd(width, height)
    return f"{width // g}:{height // g}"


def nearest_aspect(width: int, height: int) -> str:
    """The closest of the common frame shapes (what the embedded model was trained on)."""
    options = {"16:9": 16 / 9, "4:3": 4 / 3, "1:1": 1.0, "3:4": 3 / 4, "9:16": 9 / 16}
    return min(options, key=lambda k: abs(math.log(options[k] * height / width)))


def _snap(seconds: float, fps: float) -> float:
    """A time on the frame grid, so injected and generated parts meet on a frame."""
    return round(seconds * fps) / fps


def _timeline(cards, duration_s, fps, aspect, resolution, seed, variations, prompt="", negative_prompt="",
              preset=None, **extra) -> Timeline:
    tl = Timeline(duration_s=duration_s, fps=fps, aspect=aspect, resolution=resolution, seed=seed,
                  variations=variations, prompt=prompt, negative_prompt=negative_prompt, preset=preset,
                  cards=list(cards), **extra)
    return validate(tl)


def _common(kw: dict) -> dict:
    out = {"fps": PARAMS["fps"].default, "aspect": PARAMS["aspect"].default, "resolution": PARAMS["resolution"].default,
           "seed": None, "variations": 1, "negative_prompt": "", "preset": None}
    out.update({k: v for k, v in kw.items() if v is not None})
    return out


def t2v(prompt: str, duration_s: float = PARAMS["duration_s"].default, **kw) -> Timeline:
    """Text to video: one text card over the whole span (an empty prompt: an unconditioned scene)."""
    duration_s = check("duration_s", duration_s)
    cards = [TextCard(0.0, duration_s, prompt)] if prompt.strip() else []
    return _timeline(cards, duration_s, **_common(kw))


def i2v(image: str, prompt: str = "", at_s: float = 0.0, duration_s: float = PARAMS["duration_s"].default,
        strength: float = 1.0, **kw) -> Timeline:
    """Image to video: the image pinned at `at_s`, the rest generated (aspect follows the image)."""
    info = _info(image, "image")
    kw.setdefault("aspect", None)
    kw["aspect"] = kw["aspect"] or nearest_aspect(info.width, info.height)
    duration_s = check("duration_s", duration_s)
    cards = [ImageCard(at_s, image, check("strength", strength))]
    if prompt.strip():
        cards.append(TextCard(0.0, duration_s, prompt))
    return _timeline(cards, duration_s, **_common(kw))


def storyboard(cards: list, duration_s: float, **kw) -> Timeline:
    return _timeline(cards, check("duration_s", duration_s), **_common(kw))


def interpolate(images: list[tuple[str, float]], prompt: str = "", duration_s: float | None = None, **kw) -> Timeline:
    """Images at their moments; everything between them generated."""
    if not images:
        raise InputError("images: give at least one image")
    duration_s = duration_s or max(at for _, at in images) or PARAMS["duration_s"].default
    if not kw.get("aspect"):
        info = _info(images[0][0], "images[0]")
        kw["aspect"] = nearest_aspect(info.width, info.height)
    cards = [ImageCard(at, path) for path, at in images]
    if prompt.strip():
        cards.append(TextCard(0.0, duration_s, prompt))
    return _timeline(cards, duration_s, **_common(kw))


def _video_info(path: str, field: str, verb: str, min_frames: int = 1):
    """Probe a clip an operation needs to be a video (an image or a too-short clip is refused by name)."""
    info = _info(path, field)
    if info.kind != "video" or info.n_frames < min_frames:
        raise InputError(f"{field}: {verb} needs a video of at least {min_frames} frames; {path!r} is "
                         + ("an image" if info.kind != "video" else f"{info.n_frames} frame(s)"))
    return info


def _clip_defaults(info, kw: dict) -> tuple[dict, float]:
    """fps and aspect from the source unless given; its duration (capped at the longest timeline)."""
    kw = dict(kw)
    if kw.get("fps") is None:
        kw["fps"] = min(PARAMS["fps"].max, round(info.fps or PARAMS["fps"].default))
    if kw.get("aspect") is None:
        kw["aspect"] = aspect_of(info.width, info.height)
    return _common(kw), min(info.duration_s, PARAMS["duration_s"].max)


def remix(video: str, prompt: str, amount: float = PARAMS["amount"].default, **kw) -> Timeline:
    """The clip over the whole span kept by 1 - amount; the prompt says what it should become."""
    amount = check("amount", amount, "amount")
    info = _video_info(video, "video", "remix")
    common, duration = _clip_defaults(info, kw)
    duration = _snap(duration, common["fps"]) or 1 / common["fps"]
    cards = [VideoCard(0.0, duration, video, 0.0, None, strength=1.0 - amount)]
    if prompt.strip():
        cards.append(TextCard(0.0, duration, prompt))
    return _timeline(cards, duration, **common)


def upscale(video: str, resolution: int, amount: float = 0.2, prompt: str = "", **kw) -> Timeline:
    """Remix at a higher resolution with a small amount: the model redraws detail, keeps content."""
    return remix(video, prompt, amount, resolution=check("resolution", resolution), **kw)


def blend(a: str, b: str, curve, prompt_a: str = "", prompt_b: str = "", repaint=None,
          duration_s: float | None = None, **kw) -> Timeline:
    """Two clips mixed through a drawn curve (0 = A, 1 = B) over the span."""
    mix = curve if isinstance(curve, Curve) else Curve.parse(curve, "curve")
    inv = Curve(tuple((x, 1.0 - y) for x, y in mix.points))
    ia, ib = _video_info(a, "a", "blend"), _video_info(b, "b", "blend")
    common, duration = _clip_defaults(ia, kw)
    duration = min(duration, ib.duration_s) if duration_s is None else check("duration_s", duration_s)
    duration = _snap(duration, common["fps"]) or 1 / common["fps"]
    noise = repaint if isinstance(repaint, Curve) else (Curve.parse(repaint, "repaint") if repaint is not None
                                                         else default_repaint(mix))
    cards = [VideoCard(0.0, duration, a, weight=inv), VideoCard(0.0, duration, b, weight=mix)]
    if prompt_a.strip():
        cards.append(TextCard(0.0, duration, prompt_a, weight=inv))
    if prompt_b.strip():
        cards.append(TextCard(0.0, duration, prompt_b, weight=mix))
    return _timeline(cards, duration, noise=noise, **common)


def default_repaint(mix: Curve, samples: int = 33) -> Curve:
    """Noise level 0.9 * 4 m (1 - m): where the mix is pure the clip is kept; at m = 0.5 mostly repainted."""
    import numpy as np
    xs = np.linspace(0, 1, samples)
    m = mix(xs)
    return Curve(tuple((float(x), float(0.9 * 4 * v * (1 - v))) for x, v in zip(xs, m)))


def loop(video: str, bridge_s: float = PARAMS["bridge_s"].default, context_s: float = PARAMS["context_s"].default,
         prompt: str = "", section: tuple[float, float] | None = None, **kw) -> Timeline:
    """Clip + a generated bridge that leads from its last frame back into its first: seamless on repeat.
    section=(in_s, out_s): only that part of the clip is looped (None: the whole clip)."""
    info = _video_info(video, "video", "loop", min_frames=2)
    common, T = _clip_defaults(info, kw)
    fps = common["fps"]
    a, z = _section(section, _snap(T, fps), fps)
    L = z - a
    b = _snap(check("bridge_s", bridge_s), fps) or 1 / fps
    c = _snap(min(check("context_s", context_s), L / 2), fps) or 1 / fps
    cards = [VideoCard(0.0, c, video, z - c, z), VideoCard(c + b, c + b + c, video, a, a + c)]
    if prompt.strip():
        cards.append(TextCard(0.0, 2 * c + b, prompt))
    # The loop point (last frame -> first) falls inside one decoded span: head', the section's middle
    # verbatim, then tail' + bridge, where head' and tail' are the model's decode of the injected ends.
    # The only cuts between source pixels and decoded ones are between neighbouring frames of the clip.
    middle = [Piece(video, a + c, z - c)] if L - 2 * c > 0.5 / fps else []
    assembly = [Piece("generated", c + b, 2 * c + b), *middle, Piece("generated", 0.0, c + b)]
    return _timeline(cards, 2 * c + b, assemble=assembly, **common)


def _section(section, T: float, fps: float, field: str = "section") -> tuple[float, float]:
    """(in_s, out_s) of a clip T s long, on the frame grid and at least two frames apart (a loop needs a first
    and a last frame); None: the whole clip. InputError naming the field otherwise."""
    if section is None:
        return 0.0, T
    try:
        if isinstance(section, (str, bytes)):   # "12" would read as 1:2
            raise TypeError
        a, z = (float(v) for v in section)
    except (TypeError, ValueError):
        raise InputError(f"{field}: expected [in_s, out_s] in seconds, e.g. [0.5, 2]") from None
    if not (math.isfinite(a) and math.isfinite(z) and 0 <= a < z <= T + 1e-6):
        raise InputError(f"{field}: {a:g}:{z:g} is not inside the clip (0:{T:g}); give in < out, in seconds")
    a, z = _snap(a, fps), min(_snap(z, fps), T)
    if z - a < 2 / fps - 1e-9:
        raise InputError(f"{field}: {a:g}:{z:g} is under two frames ({2 / fps:g} s at {fps:g} fps); "
                         "a loop needs at least two")
    return a, z


def extend(video: str, seconds: float = PARAMS["extend_s"].default, direction: str = "forward", prompt: str = "",
           context_s: float = PARAMS["context_s"].default, **kw) -> Timeline:
    """The clip continued forward (or led into backward) by `seconds` of new video."""
    check("direction", direction)
    info = _info(video, "video")
    common, T = _clip_defaults(info, kw)
    fps = common["fps"]
    T = _snap(T, fps) if info.kind == "video" else 1 / fps
    s = _snap(check("extend_s", seconds, "seconds"), fps) or 1 / fps
    c = _snap(min(check("context_s", context_s), T), fps) or 1 / fps
    if direction == "forward":
        cards = [VideoCard(0.0, c, video, max(0.0, T - c), T)]
        assembly = [Piece(video, 0.0, T), Piece("generated", c, c + s)]
    else:
        cards = [VideoCard(s, s + c, video, 0.0, c)]
        assembly = [Piece("generated", 0.0, s), Piece(video, 0.0, T)]
    if info.kind == "image":  # an image is extended as a still held for its one frame
        cards = [ImageCard(0.0 if direction == "forward" else s, video)]
        assembly = None
    if prompt.strip():
        cards.append(TextCard(0.0, c + s, prompt))
    return _timeline(cards, c + s, assemble=assembly, **common)


def recut(video: str, trim: tuple[float, float] | None = None, fps: float | None = None,
          pieces: list[tuple[float, float]] | None = None, **kw) -> Timeline:
    """Trim / reorder / change fps without the model: an assembly of the source's own pieces."""
    info = _video_info(video, "video", "recut")
    short = min(info.width, info.height, PARAMS["resolution"].max)  # the source's own size; no model limits apply
    kw = dict(kw, fps=fps, resolution=short if kw.get("resolution") is None else kw["resolution"])
    common, T = _clip_defaults(info, kw)
    spans = pieces or [trim or (0.0, T)]
    out = []
    for i, (a, b) in enumerate(spans):
        if not (0 <= a < b <= T + 1e-6):
            raise InputError(f"trim: {a:g}:{b:g} is not inside the clip (0:{T:g}); write START:END in seconds")
        out.append(Piece(video, float(a), float(b)))
    duration = sum(p.out_s - p.in_s for p in out)
    return _timeline([], duration, assemble=out, **common)
