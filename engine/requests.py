"""Request objects: one JSON shape per operation, shared by the studio, its API and the Videos API.

    build("remix", {"video": "lib:12", "prompt": "a blue square", "amount": 0.3}, media=resolve)
        -> (Timeline, {"steps": ..., ...}, {"remix_of": ["lib:12"]})

A request names media by reference; `media(field, ref)` turns a reference into a local
path. The studio passes a resolver that only knows library ids and its own uploads, so
no string in a request ever reaches the filesystem unchecked.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from engine import ops
from engine.params import LIMITS, InputError
from engine.timeline import Timeline, fresh_seed

COMMON = {"aspect", "resolution", "fps", "seed", "variations", "preset", "negative_prompt"}
SAMPLING = {"steps", "guidance", "shift", "solver", "audio"}
MEDIA = ("image", "video", "a", "b")    # the request fields that name media, every operation's
TEXT_FIELDS = ("prompt", "negative_prompt", "prompt_a", "prompt_b")


@dataclass(frozen=True)
class Op:
    """An operation, declared once: its request fields, how a request becomes its timeline, and what the
    studio calls and files its videos under. The library's kinds, job labels, the page's tabs and lineage,
    and the Videos API all read OPS; defaults are engine.params' (through engine.ops' signatures)."""
    name: str
    fields: frozenset[str]      # its own request fields; COMMON (but for a storyboard) and SAMPLING come on top
    build: Callable[..., Timeline]   # (req, path, kw, media, refs) -> Timeline; see _build
    word: str                   # what its videos are called in a label: "remix: a blue box" ("" for generate)
    lineage: str                # the relation its sources are recorded under: {"remix_of": ["lib:12"]}
    tab: str                    # the studio tab that makes it
    shorten: str = "duration_s"  # the field a person changes to make its video shorter

    def allowed(self) -> set[str]:
        return set(self.fields) | SAMPLING | (COMMON if self.name != "storyboard" else {"seed", "variations"})


def _text(req: dict, name: str) -> str:
    v = req.get(name) or ""
    if not isinstance(v, str):
        raise InputError(f"{name}: expected text, got {type(v).__name__}")
    return v


def build(op: str, req: dict, media: Callable[[str, str], str] = lambda field, ref: ref, spec=None
          ) -> tuple[Timeline, dict, dict]:
    """(op, request) -> (timeline, sampling settings given, lineage {relation: [refs]}).

    A request is held to LIMITS (it comes from the page or the API); with the backend's LatentSpec,
    also to the memory its video would need. An error names media by the references they were given
    as, never by the paths they resolve to (a client need not learn where the data folder is)."""
    given: dict[str, str] = {}

    def resolve(field: str, ref) -> str:
        given[path := media(field, ref)] = str(ref)
        return path
    try:
        return _build(op, req, resolve, spec)
    except InputError as e:
        msg = str(e)
        for path, ref in sorted(given.items(), key=lambda kv: -len(kv[0])):  # longest first: no partial matches
            msg = msg.replace(path, ref)
        raise InputError(msg) from None


def _build(op: str, req: dict, media: Callable[[str, str], str], spec) -> tuple[Timeline, dict, dict]:
    if op not in OPS:
        raise InputError(f"op: {op!r} is not an operation; choose one of {', '.join(OPS)}")
    if not isinstance(req, dict):
        raise InputError(f"request: expected a JSON object with the fields of {op}")
    allowed = OPS[op].allowed()
    unknown = sorted(set(req) - allowed)
    if unknown:
        raise InputError(f"request: unknown field {unknown[0]!r} for {op}; allowed: {', '.join(sorted(allowed))}")
    check_counts(req)
    kw = {k: req[k] for k in COMMON if req.get(k) is not None}
    settings = {k: req[k] for k in SAMPLING if req.get(k) is not None}
    refs = [req[f] for f in MEDIA if req.get(f)]
    path = {f: media(f, req[f]) for f in MEDIA if req.get(f)}

    tl = OPS[op].build(req, path=path, kw=kw, media=media, refs=refs)
    LIMITS["seconds"].check(tl.duration_s, OPS[op].shorten)
    if spec is not None:
        from engine.plan import estimate_bytes, make_grid
        LIMITS["memory_gb"].check(round(estimate_bytes(make_grid(tl, spec), tl.variations) / 2**30, 1),
                                  "storyboard.resolution" if op == "storyboard" else "resolution")
    # a request without a seed gets a fresh one here: the job built from it records the seed it used
    return fresh_seed(tl), settings, ({OPS[op].lineage: refs} if refs else {})


# ----------------------------------------------------------------------------- the operations
# Each builder: (req, path {media field: local path}, kw {COMMON fields given}) -> Timeline. A field the request
# leaves out is left out of the call, so the default is engine.ops' (which reads engine.params), never retyped.
def _given(req: dict, *names: str, **renamed: str) -> dict:
    """The fields of req that are set, as keyword arguments (renamed={arg: field} where the names differ)."""
    out = {n: req[n] for n in names if req.get(n) is not None}
    return out | {arg: req[f] for arg, f in renamed.items() if req.get(f) is not None}


def _generate(req, path, kw, **_) -> Timeline:
    if "image" in path and "video" in path:
        raise InputError("image: give an image or a video, not both")
    prompt = _text(req, "prompt")
    if "image" in path:
        return ops.i2v(path["image"], prompt, req.get("at_s") or 0.0, **_given(req, "duration_s"), **kw)
    if "video" in path:   # a video to go on from: its continuation, duration_s long
        return ops.extend(path["video"], prompt=prompt, **_given(req, seconds="duration_s"), **kw)
    return ops.t2v(prompt, **_given(req, "duration_s"), **kw)


def _storyboard(req, path, kw, media, refs) -> Timeline:
    story = req.get("storyboard")
    if not isinstance(story, dict):
        raise InputError("storyboard: expected the storyboard object (the engine's .json format)")
    story = map_media(story, lambda field, ref: _remember(refs, ref, media(field, ref)))
    story.update({k: req[k] for k in ("seed", "variations") if req.get(k) is not None})
    return Timeline.from_dict(story)


def _remix(req, path, kw, **_) -> Timeline:
    return ops.remix(_need(path, "video"), _text(req, "prompt"), **_given(req, "amount"), **kw)


def _blend(req, path, kw, **_) -> Timeline:
    if req.get("curve") is None:
        raise InputError("curve: missing; give [[time, mix], ...] with mix 0 = A, 1 = B")
    return ops.blend(_need(path, "a"), _need(path, "b"), req["curve"], _text(req, "prompt_a"), _text(req, "prompt_b"),
                     **_given(req, "repaint", "duration_s"), **kw)


def _loop(req, path, kw, **_) -> Timeline:
    return ops.loop(_need(path, "video"), prompt=_text(req, "prompt"),
                    **_given(req, "bridge_s", "context_s", "section"), **kw)


def _extend(req, path, kw, **_) -> Timeline:
    return ops.extend(_need(path, "video"), prompt=_text(req, "prompt"),
                      **_given(req, "direction", "context_s", seconds="extend_s"), **kw)


def _recut(req, path, kw, **_) -> Timeline:
    """Trim / fps without the model, or an upscale with it."""
    if req.get("upscale") is not None:
        if req.get("trim") is not None:
            raise InputError("trim: trim first, then upscale the trimmed clip (one step at a time)")
        return ops.upscale(_need(path, "video"), req["upscale"], prompt=_text(req, "prompt"), **_given(req, "amount"),
                           **{k: v for k, v in kw.items() if k != "resolution"})
    trim = req.get("trim")
    if trim is not None and (not isinstance(trim, (list, tuple)) or len(trim) != 2):
        raise InputError("trim: expected [start_s, end_s]")
    return ops.recut(_need(path, "video"), tuple(trim) if trim else None, req.get("fps"))


OPS: dict[str, Op] = {o.name: o for o in [
    Op("generate", frozenset({"prompt", "image", "video", "duration_s", "at_s"}), _generate, "", "made_from",
       "create"),
    Op("storyboard", frozenset({"storyboard"}), _storyboard, "storyboard", "made_from", "storyboard",
       "storyboard.duration_s"),
    Op("remix", frozenset({"video", "prompt", "amount"}), _remix, "remix", "remix_of", "remix", "video"),
    Op("blend", frozenset({"a", "b", "curve", "repaint", "prompt_a", "prompt_b", "duration_s"}), _blend, "blend",
       "blend_of", "blend"),
    Op("loop", frozenset({"video", "prompt", "bridge_s", "context_s", "section"}), _loop, "loop", "loop_of", "loop",
       "bridge_s"),
    Op("extend", frozenset({"video", "prompt", "extend_s", "direction", "context_s"}), _extend, "extend",
       "extension_of", "recut", "extend_s"),
    Op("recut", frozenset({"video", "trim", "upscale", "amount", "prompt"}), _recut, "re-cut", "recut_of", "recut",
       "video"),
]}


def check_counts(req: dict) -> None:
    """Refuse a request whose prompts, cards or curves are larger than LIMITS allow, before any is parsed."""
    story = req.get("storyboard") if isinstance(req.get("storyboard"), dict) else {}
    texts = [(k, req.get(k)) for k in TEXT_FIELDS] + [(f"storyboard.{k}", story.get(k)) for k in TEXT_FIELDS]
    curves = [(k, req.get(k)) for k in ("curve", "repaint")] + [("storyboard.noise", story.get("noise"))]
    for name in ("cards", "assemble"):
        items = story.get(name)
        if isinstance(items, list):
            LIMITS["cards"].check(len(items), f"storyboard.{name}")
            texts += [(f"storyboard.{name}[{i}].text", c.get("text")) for i, c in enumerate(items) if isinstance(c, dict)]
            curves += [(f"storyboard.{name}[{i}].weight", c.get("weight")) for i, c in enumerate(items)
                       if isinstance(c, dict)]
    for field, text in texts:
        if isinstance(text, str):
            LIMITS["prompt_chars"].check(len(text), field)
    for field, curve in curves:
        if isinstance(curve, (list, tuple, str)):
            LIMITS["curve_points"].check(len(curve) if not isinstance(curve, str) else curve.count(",") + 1, field)


def _need(path: dict, field: str) -> str:
    if field not in path:
        raise InputError(f"{field}: missing; give a video (a library item or an upload)")
    return path[field]


def map_media(story: dict, fn: Callable[[str, str], str]) -> dict:
    """A storyboard dict with fn(field, ref) applied to every media reference in it: each image or video
    card's path and each assembled piece's source other than "generated". The one list of where a
    storyboard names media, so no reference can slip past the resolver."""
    out = dict(story)
    if isinstance(story.get("cards"), list):
        out["cards"] = [dict(c, path=fn(f"cards[{i}].path", c["path"]))
                        if isinstance(c, dict) and c.get("kind") in ("image", "video") and c.get("path") else c
                        for i, c in enumerate(story["cards"])]
    if isinstance(story.get("assemble"), list):
        out["assemble"] = [dict(p, source=fn(f"assemble[{i}].source", p["source"]))
                           if isinstance(p, dict) and p.get("source") not in (None, "", "generated") else p
                           for i, p in enumerate(story["assemble"])]
    return out


def _remember(refs: list, ref, path: str) -> str:
    """Keep a resolved reference for the lineage; -> its path."""
    refs.append(ref)
    return path
