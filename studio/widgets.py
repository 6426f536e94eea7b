"""Widgets drawn in the page: the Blend tab's curve editor, the Storyboard's timeline strip, Re-cut's filmstrip.

Each is a `gr.HTML` component with a static template; the JS in `js_on_load` draws into it
from `props.value` and redraws when Python sends a new value (`watch('value', ...)`). In
Gradio 6 an edit reaches Python only when `props.value` is given a *new* object (the props
proxy compares by reference; mutating the old object syncs nothing), so every edit builds a
new value and assigns it once, on release. That fires the component's `.change` (which also
fires when Python sets the value); the page also fires `.input`, for its own edits only: listen
to `.input` to avoid a loop when a handler writes the value back. Both see the new value.

The JS and CSS are files of the package (studio/static/curve.*, strip.*, filmstrip.*), read when a widget is made and
sent inline with the page: nothing is fetched from the network, thumbnails come in the value as
`data:image/...` URIs.
"""
from __future__ import annotations

import copy
import html
import json
import math
from pathlib import Path

import gradio as gr

from engine.params import InputError
from engine.timeline import parse_json

STATIC = Path(__file__).parent / "static"


def static_text(name: str) -> str:
    """A JS or CSS file of studio/static, as text (it goes into the page inline)."""
    return (STATIC / name).read_text(encoding="utf-8")


def widget_js(name: str) -> str:
    """A widget's js_on_load: the helpers all widgets share (widget.js), then its own file."""
    return static_text("widget.js") + static_text(name)


# ----------------------------------------------------------------------------- curve editor
MAX_POINTS = 64

CURVE_PRESETS: dict[str, dict] = {
    # A, a smooth crossover in the middle, then B
    "transition": {"mix": [[0.0, 0.0], [0.35, 0.0], [0.65, 1.0], [1.0, 1.0]], "repaint": None, "edit": "mix"},
    # both all the way through
    "mix": {"mix": [[0.0, 0.5], [1.0, 0.5]], "repaint": None, "edit": "mix"},
    # A with a short visit to B in the middle
    "sample": {"mix": [[0.0, 0.0], [0.4, 0.0], [0.5, 1.0], [0.6, 0.0], [1.0, 0.0]], "repaint": None, "edit": "mix"},
}


def curve_preset(name: str) -> dict:
    """A fresh copy of a preset's value (safe to change)."""
    return copy.deepcopy(CURVE_PRESETS[name])


def auto_repaint(m: float) -> float:
    """The engine's repaint strength when the curve's repaint is None: 0 at pure A or B, 0.9 at an even mix."""
    return 0.9 * 4 * m * (1 - m)


def normalize_curve(value) -> dict:
    """A curve editor value (dict or JSON text) checked and in canonical form, or InputError naming the field.

    Canonical: `{"mix": [[t, m], ...], "repaint": [[t, level], ...] | None, "edit": "mix" | "repaint"}`,
    floats, sorted by t, t strictly increasing from 0 to 1, values in 0..1, 2..64 points per curve.
    Points in messages are counted from 1.
    """
    if isinstance(value, str):
        value = parse_json(value, "curve")
    if not isinstance(value, dict):
        raise InputError('curve: expected an object like {"mix": [[0, 0], [1, 1]], "repaint": null}')
    unknown = sorted(set(value) - {"mix", "repaint", "edit"})
    if unknown:
        raise InputError(f"curve: unknown key {unknown[0]!r}; allowed: mix, repaint, edit")
    if "mix" not in value:
        raise InputError("curve.mix: missing; give a list of [time, mix] points")
    edit = value.get("edit", "mix")
    if edit not in ("mix", "repaint"):
        raise InputError(f"curve.edit: {edit!r} is not allowed; choose mix or repaint")
    repaint = value.get("repaint")
    return {"mix": _points(value["mix"], "mix"),
            "repaint": None if repaint is None else _points(repaint, "repaint"),
            "edit": edit}


def _points(pts, name: str) -> list[list[float]]:
    where = f"curve.{name}"
    if not isinstance(pts, (list, tuple)):
        raise InputError(f"{where}: expected a list of [time, {name}] points")
    if not 2 <= len(pts) <= MAX_POINTS:
        raise InputError(f"{where}: has {len(pts)} point(s); allowed 2..{MAX_POINTS}")
    out = []
    for n, p in enumerate(pts, 1):
        if not isinstance(p, (list, tuple)) or len(p) != 2:
            raise InputError(f"{where}: point {n} is {json.dumps(p, default=repr)}; expected a [time, {name}] pair")
        for label, x in zip(("time", name), p):
            if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
                raise InputError(f"{where}: point {n} has {label} {x!r}; expected a finite number in 0..1")
            if not 0 <= x <= 1:
                raise InputError(f"{where}: point {n} has {label} {x:g}; allowed 0..1")
        out.append([float(p[0]), float(p[1])])
    out.sort(key=lambda p: p[0])
    for a, b in zip(out, out[1:]):
        if b[0] <= a[0]:
            raise InputError(f"{where}: two points at time {a[0]:g}; times must differ")
    if out[0][0] != 0 or out[-1][0] != 1:
        raise InputError(f"{where}: runs from time {out[0][0]:g} to {out[-1][0]:g}; it must start at 0 and end at 1")
    return out


def curve_preview_html(value) -> str:
    """What a curve means, in words, as a small HTML block, e.g.
    `0–35 %: A · 35–65 %: crossfade A→B · 65–100 %: B; automatic repaint peaks at 0.90 at 50 %`."""
    v = normalize_curve(value)
    spans = " · ".join(f"{_pct(a)}–{_pct(b)} %: {label}" for a, b, label in _mix_spans(v["mix"]))
    if v["repaint"] is None:
        level, at = _auto_peak(v["mix"])
        kind = "automatic repaint"
    else:
        at, level = max(v["repaint"], key=lambda p: p[1])
        kind = "repaint"
    repaint = f"{kind} peaks at {level:.2f} at {_pct(at)} %" if level > 0 else f"no {kind}"
    return f'<div class="cp-curve-preview">{html.escape(spans)}; {html.escape(repaint)}</div>'


def _pct(t: float) -> str:
    return f"{round(t * 100, 1):g}"


def _mix_spans(mix) -> list[tuple[float, float, str]]:
    """Maximal runs of the mix that hold still, rise or fall, each with a label."""
    runs = []  # [start_t, end_t, kind, start_m, end_m]
    for (t0, m0), (t1, m1) in zip(mix, mix[1:]):
        kind = "hold" if m1 == m0 else "rise" if m1 > m0 else "fall"
        prev = runs[-1] if runs else None
        if prev and prev[2] == kind and (kind != "hold" or prev[4] == m0):
            prev[1], prev[4] = t1, m1
        else:
            runs.append([t0, t1, kind, m0, m1])
    return [(a, b, _span_label(kind, m0, m1)) for a, b, kind, m0, m1 in runs]


def _span_label(kind: str, m0: float, m1: float) -> str:
    if kind == "hold":
        if m0 == 0:
            return "A"
        if m0 == 1:
            return "B"
        return f"blend {_pct(1 - m0)} % A + {_pct(m0)} % B"
    lo, hi = sorted((m0, m1))
    if lo == 0 and hi == 1:
        return "crossfade A→B" if kind == "rise" else "crossfade B→A"
    return f"blend {_pct(m0)}→{_pct(m1)} % B"


def _auto_peak(mix) -> tuple[float, float]:
    """(level, t) where the automatic repaint is highest: where the mix is closest to 0.5."""
    best = (-1.0, 0.0)
    for (t0, m0), (t1, m1) in zip(mix, mix[1:]):
        candidates = [(t0, m0), (t1, m1)]
        if m0 != m1 and (m0 - 0.5) * (m1 - 0.5) < 0:
            candidates.append((t0 + (0.5 - m0) / (m1 - m0) * (t1 - t0), 0.5))
        for t, m in candidates:
            if auto_repaint(m) > best[0] + 1e-12:
                best = (auto_repaint(m), t)
    return best





def curve_editor(value: dict | None = None, elem_id: str = "blend-curve", **kw) -> gr.HTML:
    """The Blend tab's curve editor: the mix of clip A and clip B over time, and the repaint strength.

    Value: `{"mix": [[t, m], ...], "repaint": [[t, level], ...] | None, "edit": "mix" | "repaint"}`
    (see `normalize_curve`); `repaint: None` is automatic (0.9·4m(1−m)), drawn dashed. `edit` says
    which curve the pointer edits. Drag a point, press on empty space to add one, double-click or
    right-click a point to remove it. Each edit is sent once, on release, and fires `.change`
    (which also fires when Python sets the value) and `.input` (edits in the page only). The value from the page
    has t rounded to 0.001 and endpoints at exactly 0 and 1; pass it through `normalize_curve`.
    Handles are `.cp-point[data-curve][data-i]`.
    """
    kw.setdefault("apply_default_css", False)
    return gr.HTML(normalize_curve(value) if value is not None else curve_preset("transition"),
                   html_template='<div class="cp-curve"></div>', css_template=static_text("curve.css"),
                   js_on_load=widget_js("curve.js"),
                   elem_id=elem_id, **kw)


# ----------------------------------------------------------------------------- timeline strip



def timeline_strip(value: dict | None = None, elem_id: str = "storyboard-strip", **kw) -> gr.HTML:
    """The Storyboard tab's timeline: a time axis and one lane per card kind (Text, Image, Video).

    Value: `{"duration_s": float, "cards": [card, ...], "selected": int | None,
    "thumbs": {"<card index>": "data:image/..."}}` with cards as `engine.timeline` writes them: `{"kind": "text", "start_s", "end_s", "text", "weight"}`,
    `{"kind": "image", "at_s", "path", "strength"}`, `{"kind": "video", "start_s", "end_s", "path",
    "source_in_s", "source_out_s", "strength", "weight"}`; thumbnails other than `data:image/` URIs are
    not shown. Cards are `.cp-card[data-i]`; overlapping text cards stack in their lane.

    Click a card to select it (`selected` = its index; a click on an empty lane clears it); drag it
    sideways to move it in time (snapped to 0.1 s, kept within 0..duration_s; span cards keep their
    length); drag a span card's edge (`.cp-edge[data-edge=start|end]`) to move that end only (snapped to
    0.1 s, at least 0.1 s long). Drop a `text/x-cinepatch-ref` drag (a Library clip, `media_chip`) or a
    desktop file on it: the value comes once with `"drop": {"at_s", "ref"}`, or `{"at_s", "file": its path in
    Gradio's upload folder}` (the file is uploaded first; `{"at_s", "error"}` when that failed). Each is sent
    once, on release, and fires `.change` (when the value differs; it also fires when Python sets the value), `.input` (page edits only) and `.select` with `gr.SelectData` (`index` = the
    card's index or None, `value` = the card without its `path`, which Gradio refuses in event
    data; `selected` = False when cleared).
    """
    kw.setdefault("apply_default_css", False)
    value = value if value is not None else {"duration_s": 4.0, "cards": [], "selected": None, "thumbs": {}}
    return gr.HTML(value, html_template='<div class="cp-strip"></div>', css_template=static_text("strip.css"),
                   js_on_load=widget_js("strip.js"), elem_id=elem_id, **kw)


def media_chip(value: dict | None = None, elem_id: str = "card-chip", **kw) -> gr.HTML:
    """The Storyboard's picked media as a chip to drag onto the timeline strip (issue 21).

    Value: `{"ref": "lib:<id>" | "upload:<name>", "name": str, "thumb": "data:image/..."}`, or `{}` for nothing picked
    (the chip then says how to pick). Dragging it carries its `ref` as `text/x-cinepatch-ref` (widget.js REF_TYPE);
    the strip turns a drop of it into a card.
    """
    kw.setdefault("apply_default_css", False)
    return gr.HTML(value or {}, html_template='<div class="cp-chip"></div>', css_template=static_text("chip.css"),
                   js_on_load=widget_js("chip.js"), elem_id=elem_id, **kw)


# ----------------------------------------------------------------------------- filmstrip
def filmstrip(value: dict | None = None, elem_id: str = "recut-film", **kw) -> gr.HTML:
    """Re-cut's trim and Loop's section: frames of a clip in a row, with an in and an out handle.

    Value: `{"duration_s": float, "frames": ["data:image/...", ...], "in_s": float, "out_s": float}`; frames
    other than `data:image/` URIs are not shown, and a duration of 0 says "Choose a video". Drag a handle
    (`.cp-film-handle[data-edge=in|out]`) to move that end, snapped to 0.05 s, kept inside the clip and 0.05 s
    from the other; it is sent once, on release, firing `.input` (page edits only) and `.change`.
    """
    kw.setdefault("apply_default_css", False)
    value = value if value is not None else {"duration_s": 0.0, "frames": [], "in_s": 0.0, "out_s": 0.0}
    return gr.HTML(value, html_template='<div class="cp-film"></div>', css_template=static_text("filmstrip.css"),
                   js_on_load=widget_js("filmstrip.js"), elem_id=elem_id, **kw)
