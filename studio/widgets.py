"""Widgets drawn in the page: the Blend tab's curve editor and the Storyboard's timeline strip.

Both are `gr.HTML` components with a static template; the JS in `js_on_load` draws into it
from `props.value` and redraws when Python sends a new value (`watch('value', ...)`). In
Gradio 6 an edit reaches Python only when `props.value` is given a *new* object (the props
proxy compares by reference; mutating the old object syncs nothing), so every edit builds a
new value and assigns it once, on release. That fires the component's `.change` (which also
fires when Python sets the value); the page also fires `.input`, for its own edits only: listen
to `.input` to avoid a loop when a handler writes the value back. Both see the new value.

Nothing is loaded from disk or the network: the JS and CSS live in this module, thumbnails
come in the value as `data:image/...` URIs.
"""
from __future__ import annotations

import copy
import html
import json
import math

import gradio as gr

from engine.params import InputError
from engine.timeline import parse_json

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


_CURVE_CSS = """
.cp-curve { display: flex; flex-direction: column; gap: 6px; color: var(--body-text-color, #1f2937);
  font-size: var(--text-sm, 12px); user-select: none; -webkit-user-select: none; }
.cp-legend { display: flex; flex-wrap: wrap; align-items: center; gap: 4px 14px; }
.cp-key { display: inline-flex; align-items: center; gap: 5px; white-space: nowrap; }
.cp-swatch { display: inline-block; width: 22px; height: 10px; border-radius: 3px; }
.cp-line { display: inline-block; width: 22px; height: 0; border-top: 2px solid currentColor; }
.cp-line.cp-dashed { border-top-style: dashed; }
.cp-hint { margin-left: auto; color: var(--body-text-color-subdued, #6b7280); }
.cp-svg { display: block; width: 100%; height: auto; touch-action: none; overflow: visible; }
.cp-plot { cursor: crosshair; }
.cp-frame { fill: none; stroke: var(--border-color-primary, #d1d5db); }
.cp-grid { stroke: var(--border-color-primary, #e5e7eb); stroke-width: 1; opacity: 0.8; }
.cp-axis-label { fill: var(--body-text-color-subdued, #6b7280); font-size: 11px; }
.cp-end-label { font-size: 13px; font-weight: 700; }
.cp-mix-line { fill: none; stroke: var(--body-text-color, #1f2937); stroke-width: 2.5;
  stroke-linejoin: round; stroke-linecap: round; }
.cp-repaint-line { fill: none; stroke: #10b981; stroke-width: 2; stroke-linejoin: round; }
.cp-repaint-line.cp-auto { stroke-dasharray: 6 4; }
.cp-inactive { opacity: 0.45; }
.cp-point { cursor: grab; }
.cp-point .cp-hit { fill: transparent; }
.cp-point .cp-dot { stroke: var(--body-text-color, #1f2937); stroke-width: 2; }
.cp-point[data-curve=repaint] .cp-dot { fill: var(--background-fill-primary, #fff); stroke: #10b981; }
.cp-point.cp-active .cp-dot { stroke-width: 3; }
.cp-dragging, .cp-dragging .cp-point { cursor: grabbing; }
.cp-readout { font-size: 11px; fill: var(--body-text-color, #1f2937); paint-order: stroke;
  stroke: var(--background-fill-primary, #fff); stroke-width: 3px; }
"""

_CURVE_JS = r"""
const NS = 'http://www.w3.org/2000/svg';
const A = [59, 130, 246], B = [249, 115, 22], REPAINT = '#10b981';
const H = 230, M = {l: 38, r: 14, t: 12, b: 44};   // bottom margin holds the output band and time labels
const GAP = 0.01, MAX_POINTS = 64, TAP_MS = 400;
const uid = Math.random().toString(36).slice(2);
const root = element.querySelector('.cp-curve');
const legend = document.createElement('div');
legend.className = 'cp-legend';
const svg = document.createElementNS(NS, 'svg');
svg.setAttribute('class', 'cp-svg');
svg.setAttribute('role', 'img');
root.replaceChildren(legend, svg);
let width = 640;      // viewBox width = the element's pixel width, so text and handles keep their size
let drag = null;      // {curve, i, pts, id, x0, y0, moved} while a handle is held
let lastTap = null;   // the previous press on a handle, to remove a point on a double tap
let frame = 0;

const clamp = (x, lo, hi) => Math.min(hi, Math.max(lo, x));
const r3 = x => Math.round(x * 1000) / 1000;
const rgb = m => `rgb(${A.map((a, k) => Math.round(a + (B[k] - a) * m)).join(',')})`;
const auto = m => 0.9 * 4 * m * (1 - m);

function state() {
  const v = props.value && typeof props.value === 'object' ? props.value : {};
  return {mix: Array.isArray(v.mix) && v.mix.length >= 2 ? v.mix : [[0, 0], [1, 1]],
          repaint: Array.isArray(v.repaint) ? v.repaint : null,
          edit: v.edit === 'repaint' ? 'repaint' : 'mix'};
}
function at(pts, t) {
  for (let k = 1; k < pts.length; k++) {
    const [t0, v0] = pts[k - 1], [t1, v1] = pts[k];
    if (t <= t1) return t1 > t0 ? v0 + (v1 - v0) * (t - t0) / (t1 - t0) : v1;
  }
  return pts[pts.length - 1][1];
}
// The automatic repaint as editable points: where the mix bends or crosses 0.5, plus every 10 %,
// without the points that lie on a straight line between their neighbours.
function autoPoints(mix) {
  const ts = new Set(mix.map(p => p[0]));
  for (let k = 0; k <= 10; k++) ts.add(k / 10);
  for (let k = 1; k < mix.length; k++) {
    const [t0, m0] = mix[k - 1], [t1, m1] = mix[k];
    if ((m0 - 0.5) * (m1 - 0.5) < 0) ts.add(t0 + (0.5 - m0) / (m1 - m0) * (t1 - t0));
  }
  const sorted = [...ts].map(r3).sort((a, b) => a - b).filter((t, k, a) => k === 0 || t - a[k - 1] >= GAP);
  sorted[sorted.length - 1] = 1;
  const pts = sorted.map(t => [t, r3(auto(at(mix, t)))]);
  return pts.filter((p, k) => {
    if (k === 0 || k === pts.length - 1) return true;
    const [a, b] = [pts[k - 1], pts[k + 1]];
    return Math.abs(a[1] + (b[1] - a[1]) * (p[0] - a[0]) / (b[0] - a[0]) - p[1]) > 0.005;
  });
}
function editable(v) {
  const pts = v.edit === 'repaint' ? (v.repaint || autoPoints(v.mix)) : v.mix;
  return pts.map(p => [p[0], p[1]]);
}

const pw = () => width - M.l - M.r, ph = H - M.t - M.b;
const X = t => M.l + t * pw(), Y = v => M.t + (1 - v) * ph;
function toPlot(e) {
  const p = new DOMPoint(e.clientX, e.clientY).matrixTransform(svg.getScreenCTM().inverse());
  return {t: (p.x - M.l) / pw(), v: 1 - (p.y - M.t) / ph};
}
function el(tag, attrs, parent, text) {
  const n = document.createElementNS(NS, tag);
  for (const [k, val] of Object.entries(attrs)) n.setAttribute(k, val);
  if (text !== undefined) n.textContent = text;
  if (parent) parent.appendChild(n);
  return n;
}
const path = pts => pts.map((p, k) => `${k ? 'L' : 'M'}${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join('');

function drawLegend(v) {
  // the markup is built here from constants only, so innerHTML is safe
  const key = html => { const s = document.createElement('span'); s.className = 'cp-key'; s.innerHTML = html; return s; };
  const dashed = v.repaint ? '' : ' cp-dashed';
  const hint = document.createElement('span');
  hint.className = 'cp-hint';
  hint.textContent = `editing ${v.edit} · click adds a point · double-click removes`;
  legend.replaceChildren(
    key(`<i class="cp-swatch" style="background:${rgb(0)}"></i>A`),
    key(`<i class="cp-swatch" style="background:${rgb(1)}"></i>B`),
    key(`<i class="cp-swatch" style="background:linear-gradient(90deg,${rgb(0)},${rgb(1)})"></i>output`),
    key('<i class="cp-line"></i>mix'),
    key(`<i class="cp-line${dashed}" style="color:${REPAINT}"></i>repaint${dashed && ' (automatic)'}`),
    hint);
}

function draw() {
  frame = 0;
  const v = state();
  if (drag) v[drag.curve] = drag.pts;
  width = Math.max(320, Math.round(root.clientWidth || 640));
  svg.setAttribute('viewBox', `0 0 ${width} ${H}`);
  svg.setAttribute('aria-label', `Mix curve with ${v.mix.length} points; repaint ${v.repaint ? 'custom' : 'automatic'}`);
  svg.classList.toggle('cp-dragging', !!drag);
  svg.replaceChildren();
  const x0 = X(0), x1 = X(1), bottom = Y(0);

  // the band: the output's colour over time, A's colour to B's following the mix
  const grad = el('linearGradient', {id: `cp-band-${uid}`, gradientUnits: 'userSpaceOnUse', x1: x0, x2: x1, y1: 0, y2: 0},
                  el('defs', {}, svg));
  for (const [t, m] of v.mix) el('stop', {offset: t, 'stop-color': rgb(m)}, grad);
  const plot = el('g', {class: 'cp-plot'}, svg);
  el('rect', {x: x0, y: Y(1), width: pw(), height: ph, fill: `url(#cp-band-${uid})`, opacity: 0.18}, plot);
  el('rect', {x: x0, y: bottom + 6, width: pw(), height: 10, rx: 3, fill: `url(#cp-band-${uid})`}, svg);

  for (let k = 0; k <= 10; k++) el('line', {class: 'cp-grid', x1: X(k / 10), x2: X(k / 10), y1: Y(1), y2: bottom}, plot);
  for (const q of [0.25, 0.5, 0.75]) el('line', {class: 'cp-grid', x1: x0, x2: x1, y1: Y(q), y2: Y(q)}, plot);
  el('rect', {class: 'cp-frame', x: x0, y: Y(1), width: pw(), height: ph}, plot);
  for (let k = 0; k <= 4; k++) {
    el('text', {class: 'cp-axis-label', x: X(k / 4), y: H - 8, 'text-anchor': k ? (k < 4 ? 'middle' : 'end') : 'start'},
       svg, `${k * 25} %`);
  }
  el('text', {class: 'cp-end-label', x: M.l - 22, y: Y(1) + 5, 'text-anchor': 'middle', fill: rgb(1)}, svg, 'B');
  el('text', {class: 'cp-end-label', x: M.l - 22, y: bottom + 1, 'text-anchor': 'middle', fill: rgb(0)}, svg, 'A');
  el('text', {class: 'cp-axis-label', x: M.l - 22, y: Y(0.5) + 4, 'text-anchor': 'middle'}, svg, '½');

  const repaint = v.repaint || Array.from({length: 101}, (_, k) => [k / 100, auto(at(v.mix, k / 100))]);
  const inactive = curve => v.edit === curve ? '' : ' cp-inactive';
  el('path', {d: path(repaint), class: `cp-repaint-line${v.repaint ? '' : ' cp-auto'}${inactive('repaint')}`}, svg);
  el('path', {d: path(v.mix), class: `cp-mix-line${inactive('mix')}`}, svg);

  const pts = drag ? drag.pts : editable(v);
  pts.forEach(([t, y], i) => {
    const g = el('g', {class: 'cp-point' + (drag && drag.i === i ? ' cp-active' : ''), 'data-i': i, 'data-curve': v.edit,
                       transform: `translate(${X(t).toFixed(1)},${Y(y).toFixed(1)})`}, svg);
    el('circle', {class: 'cp-hit', r: 14}, g);
    el('circle', {class: 'cp-dot', r: 6, fill: v.edit === 'mix' ? rgb(y) : REPAINT}, g);
  });
  if (drag && drag.moved) {
    const [t, y] = drag.pts[drag.i];
    const pos = {x: clamp(X(t), x0 + 50, x1 - 50), y: Math.max(Y(y) - 14, M.t + 10)};
    el('text', {class: 'cp-readout', ...pos, 'text-anchor': 'middle'}, svg,
       `${Math.round(t * 100)} % · ${drag.curve} ${y.toFixed(2)}`);
  }
  drawLegend(v);
}
const redraw = () => { frame = frame || requestAnimationFrame(draw); };

// Gradio syncs props.value to Python (and fires change) only when it is given a new object.
function commit(curve, pts) {
  props.value = Object.assign({}, props.value, state(), {[curve]: pts.map(([t, y]) => [r3(t), r3(y)])});
  trigger('input');
  draw();
}
function removePoint(curve, i) {
  const pts = editable(state());
  if (i > 0 && i < pts.length - 1) { pts.splice(i, 1); commit(curve, pts); }
}

svg.addEventListener('pointerdown', e => {
  if (e.button !== 0 || drag) return;
  const v = state(), pts = editable(v), now = performance.now();
  const handle = e.target.closest('.cp-point');
  let i;
  if (handle) {
    i = +handle.dataset.i;
    if (lastTap && lastTap.i === i && lastTap.curve === v.edit && now - lastTap.time < TAP_MS) {
      lastTap = null;
      removePoint(v.edit, i);
      return;
    }
    lastTap = {i, curve: v.edit, time: now};
  } else {
    // a press on empty space inside the plot adds a point there and lets it be dragged at once
    const {t, v: y} = toPlot(e);
    if (!(t > 0 && t < 1 && y >= -0.03 && y <= 1.03) || pts.length >= MAX_POINTS) return;
    i = pts.findIndex(p => p[0] > t);
    if (t - pts[i - 1][0] < GAP || pts[i][0] - t < GAP) return;
    pts.splice(i, 0, [t, clamp(y, 0, 1)]);
    lastTap = null;
  }
  drag = {curve: v.edit, i, pts, id: e.pointerId, x0: e.clientX, y0: e.clientY, moved: !handle};
  svg.setPointerCapture(e.pointerId);
  e.preventDefault();
  draw();
});
svg.addEventListener('pointermove', e => {
  if (!drag || e.pointerId !== drag.id) return;
  if (!drag.moved && Math.hypot(e.clientX - drag.x0, e.clientY - drag.y0) < 3) return;
  drag.moved = true;
  const {pts, i} = drag, p = toPlot(e), last = pts.length - 1;
  const t = i === 0 ? 0 : i === last ? 1 : clamp(p.t, pts[i - 1][0] + GAP, pts[i + 1][0] - GAP);
  pts[i] = [t, clamp(p.v, 0, 1)];
  redraw();
});
function release(e) {
  if (!drag || e.pointerId !== drag.id) return;
  const d = drag;
  drag = null;
  if (d.moved && e.type === 'pointerup') commit(d.curve, d.pts); else draw();
}
svg.addEventListener('pointerup', release);
svg.addEventListener('pointercancel', release);
svg.addEventListener('contextmenu', e => {
  const handle = e.target.closest('.cp-point');
  if (!handle) return;
  e.preventDefault();
  removePoint(state().edit, +handle.dataset.i);
});

new ResizeObserver(() => {
  if (!drag && root.clientWidth && Math.round(root.clientWidth) !== width) redraw();
}).observe(root);
watch('value', () => { if (!drag) draw(); });
draw();
"""


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
                   html_template='<div class="cp-curve"></div>', css_template=_CURVE_CSS, js_on_load=_CURVE_JS,
                   elem_id=elem_id, **kw)


# ----------------------------------------------------------------------------- timeline strip
_STRIP_CSS = """
.cp-strip { --cp-label-w: 58px; color: var(--body-text-color, #1f2937); font-size: var(--text-sm, 12px);
  user-select: none; -webkit-user-select: none; border: 1px solid var(--border-color-primary, #d1d5db);
  border-radius: var(--block-radius, 8px); background: var(--background-fill-secondary, #f9fafb); overflow: hidden; }
.cp-row { display: flex; border-top: 1px solid var(--border-color-primary, #e5e7eb); }
.cp-row:first-child { border-top: 0; }
.cp-lane-label { flex: 0 0 var(--cp-label-w); padding: 6px 8px; color: var(--body-text-color-subdued, #6b7280);
  border-right: 1px solid var(--border-color-primary, #e5e7eb); display: flex; align-items: center; }
.cp-track { position: relative; flex: 1; min-width: 0; margin: 0 12px; }
.cp-axis .cp-track { height: 24px; }
.cp-tick { position: absolute; bottom: 0; height: 5px; border-left: 1px solid var(--body-text-color-subdued, #9ca3af); }
.cp-tick.cp-major { height: 9px; }
.cp-tick span { position: absolute; bottom: 9px; transform: translateX(-50%); font-size: 10px; white-space: nowrap;
  color: var(--body-text-color-subdued, #6b7280); }
.cp-card { position: absolute; box-sizing: border-box; border-radius: 5px; cursor: grab; touch-action: none;
  overflow: hidden; display: flex; align-items: center; }
.cp-card.cp-moving { cursor: grabbing; opacity: 0.85; z-index: 2; }
.cp-card.cp-selected { outline: 2px solid var(--color-accent, #f97316); outline-offset: 1px; z-index: 1; }
.cp-card .cp-label { padding: 0 6px; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; min-width: 0; }
.cp-text { height: 24px; background: rgba(139, 92, 246, 0.22); border: 1px solid rgba(139, 92, 246, 0.7); }
.cp-video { height: 40px; border: 1px solid rgba(14, 165, 233, 0.8); background-color: rgba(14, 165, 233, 0.2);
  background-size: auto 100%; background-repeat: repeat-x; align-items: flex-end; }
.cp-video .cp-label { background: rgba(0, 0, 0, 0.55); color: #fff; border-radius: 0 4px 0 0; line-height: 16px; }
.cp-image { width: 40px; height: 40px; transform: translateX(-50%); overflow: visible; justify-content: center;
  border: 1px solid rgba(16, 185, 129, 0.9); background: rgba(16, 185, 129, 0.2); }
.cp-image img { width: 100%; height: 100%; object-fit: cover; border-radius: 4px; pointer-events: none; }
.cp-image::after { content: ''; position: absolute; left: 50%; bottom: -6px; margin-left: -4px;
  border: 4px solid transparent; border-top-color: rgba(16, 185, 129, 0.9); border-bottom: 0; }
.cp-image .cp-label { font-size: 16px; color: rgba(16, 185, 129, 1); }
.cp-tip { position: absolute; top: 2px; right: 4px; font-size: 10px; padding: 0 4px; border-radius: 3px;
  background: var(--background-fill-primary, #fff); color: var(--body-text-color, #1f2937); }
.cp-empty { color: var(--body-text-color-subdued, #9ca3af); font-style: italic; position: absolute; top: 50%;
  transform: translateY(-50%); }
"""

_STRIP_JS = r"""
const root = element.querySelector('.cp-strip');
const LANES = [['text', 'Text'], ['image', 'Image'], ['video', 'Video']];
const ROW = 30, LANE_H = {image: 52, video: 48}, SNAP = 0.1;
let drag = null;   // {i, x0, width, el, moved, id} while a card is held

const clamp = (x, lo, hi) => Math.min(hi, Math.max(lo, x));
const r3 = x => Math.round(x * 1000) / 1000;
const isSpan = c => c.kind !== 'image';
const fmt = s => `${r3(s)} s`;
function state() {
  const v = props.value && typeof props.value === 'object' ? props.value : {};
  return {duration: Math.max(0.1, +v.duration_s || 1), cards: Array.isArray(v.cards) ? v.cards : [],
          selected: Number.isInteger(v.selected) ? v.selected : null, thumbs: v.thumbs || {}};
}
function div(cls, parent, text) {
  const n = document.createElement('div');
  n.className = cls;
  if (text !== undefined) n.textContent = text;
  if (parent) parent.appendChild(n);
  return n;
}
// only inline images: nothing is fetched from anywhere
const thumb = (thumbs, i) => {
  const t = thumbs[String(i)];
  return typeof t === 'string' && t.startsWith('data:image/') ? t.replace(/["\\\s]/g, encodeURIComponent) : null;
};
// Text cards may overlap (with a weight curve): each goes on the first row where it fits.
function stack(cards) {
  const rows = [], at = {};
  cards.map((c, i) => [c, i]).filter(([c]) => c.kind === 'text')
    .sort((a, b) => a[0].start_s - b[0].start_s)
    .forEach(([c, i]) => {
      let r = rows.findIndex(end => end <= c.start_s + 1e-6);
      if (r < 0) { r = rows.length; rows.push(0); }
      rows[r] = c.end_s;
      at[i] = r;
    });
  return {rows: Math.max(1, rows.length), at};
}
function ticks(track, d) {
  const w = track.clientWidth || 600;
  const step = [1, 2, 5, 10, 15, 30, 60, 120, 300].find(s => w / (d / s) >= 44) || 600;
  const minor = w / d >= 8 ? 1 : step;
  for (let s = 0; s <= d + 1e-9; s += minor) {
    const major = Math.abs(s / step - Math.round(s / step)) < 1e-9;
    const t = div('cp-tick' + (major ? ' cp-major' : ''), track);
    t.style.left = `${s / d * 100}%`;
    if (major) t.appendChild(document.createElement('span')).textContent = `${s} s`;
  }
}

function draw() {
  const v = state(), d = v.duration, lanes = stack(v.cards);
  const axis = div('cp-row cp-axis', null);
  div('cp-lane-label', axis);
  ticks(div('cp-track', axis), d);
  const rows = [axis];
  const tracks = {};
  for (const [kind, label] of LANES) {
    const row = div('cp-row cp-lane', null);
    row.dataset.kind = kind;
    div('cp-lane-label', row, label);
    tracks[kind] = div('cp-track', row);
    tracks[kind].style.height = `${kind === 'text' ? lanes.rows * ROW + 6 : LANE_H[kind]}px`;
    rows.push(row);
  }
  v.cards.forEach((c, i) => {
    if (!tracks[c.kind]) return;
    const n = div(`cp-card cp-${c.kind}${v.selected === i ? ' cp-selected' : ''}`, tracks[c.kind]);
    n.dataset.i = i;
    const src = thumb(v.thumbs, i);
    if (isSpan(c)) {
      n.style.left = `${c.start_s / d * 100}%`;
      n.style.width = `${(c.end_s - c.start_s) / d * 100}%`;
      const name = c.kind === 'text' ? c.text : String(c.path || '').split(/[\\/]/).pop();
      div('cp-label', n, name || '(empty)');
      n.title = `${name}\n${fmt(c.start_s)} – ${fmt(c.end_s)}`;
      if (c.kind === 'text') n.style.top = `${3 + lanes.at[i] * ROW}px`;
      else { n.style.top = '4px'; if (src) n.style.backgroundImage = `url("${src}")`; }
    } else {
      n.style.left = `${c.at_s / d * 100}%`;
      n.style.top = '4px';
      if (src) { const img = document.createElement('img'); img.src = src; img.alt = ''; n.appendChild(img); }
      else div('cp-label', n, '◆');
      n.title = `${String(c.path || '').split(/[\\/]/).pop()}\nat ${fmt(c.at_s)}`;
    }
  });
  if (!v.cards.length) div('cp-empty', tracks.text, 'No cards yet');
  root.replaceChildren(...rows);
}

// Gradio syncs props.value to Python (and fires change) only when it is given a new object.
function commit(next, i) {
  props.value = Object.assign({}, props.value, next);
  trigger('input');
  // event data holding a "path" is refused by Gradio as a file outside its cache: send the card without it
  const card = i === null ? null : Object.assign({}, state().cards[i]);
  if (card) delete card.path;
  trigger('select', {index: i, value: card, selected: i !== null});
  draw();
}
// where a held card lands for the pointer at e: snapped to 0.1 s, kept inside the timeline
function landing(held, e) {
  const {duration: d, cards} = state(), c = cards[held.i];
  const dt = (e.clientX - held.x0) / held.width * d;
  if (!isSpan(c)) return {at_s: r3(clamp(Math.round((c.at_s + dt) / SNAP) * SNAP, 0, d))};
  const len = c.end_s - c.start_s, hi = Math.max(0, d - len);
  const start = r3(clamp(Math.round((c.start_s + dt) / SNAP) * SNAP, 0, hi));
  return {start_s: start, end_s: r3(start + len)};
}

root.addEventListener('pointerdown', e => {
  if (e.button !== 0 || drag) return;
  const card = e.target.closest('.cp-card');
  if (!card) {
    if (e.target.closest('.cp-lane') && state().selected !== null) commit({selected: null}, null);
    return;
  }
  drag = {i: +card.dataset.i, x0: e.clientX, width: card.parentElement.clientWidth || 1, el: card,
          moved: false, id: e.pointerId};
  root.setPointerCapture(e.pointerId);
  e.preventDefault();
});
root.addEventListener('pointermove', e => {
  if (!drag || e.pointerId !== drag.id) return;
  if (!drag.moved && Math.abs(e.clientX - drag.x0) < 3) return;
  drag.moved = true;
  const {duration: d} = state(), to = landing(drag, e);
  drag.el.classList.add('cp-moving');
  drag.el.style.left = `${(to.at_s ?? to.start_s) / d * 100}%`;
  const tip = drag.el.querySelector('.cp-tip') || div('cp-tip', drag.el);
  tip.textContent = fmt(to.at_s ?? to.start_s);
});
function release(e) {
  if (!drag || e.pointerId !== drag.id) return;
  const d = drag;
  drag = null;
  if (e.type !== 'pointerup') { draw(); return; }
  if (!d.moved) { commit({selected: d.i}, d.i); return; }
  const to = landing(d, e);
  const cards = state().cards.map((c, k) => k === d.i ? Object.assign({}, c, to) : c);
  commit({cards, selected: d.i}, d.i);
}
root.addEventListener('pointerup', release);
root.addEventListener('pointercancel', release);

let width = 0;   // redraw on width changes only (tick density); height follows the lanes
new ResizeObserver(() => {
  if (!drag && root.clientWidth !== width) { width = root.clientWidth; draw(); }
}).observe(root);
watch('value', () => { if (!drag) draw(); });
draw();
"""


def timeline_strip(value: dict | None = None, elem_id: str = "storyboard-strip", **kw) -> gr.HTML:
    """The Storyboard tab's timeline: a time axis and one lane per card kind (Text, Image, Video).

    Value: `{"duration_s": float, "cards": [card, ...], "selected": int | None,
    "thumbs": {"<card index>": "data:image/..."}}` with cards as `engine.timeline` writes them: `{"kind": "text", "start_s", "end_s", "text", "weight"}`,
    `{"kind": "image", "at_s", "path", "strength"}`, `{"kind": "video", "start_s", "end_s", "path",
    "source_in_s", "source_out_s", "strength", "weight"}`; thumbnails other than `data:image/` URIs are
    not shown. Cards are `.cp-card[data-i]`; overlapping text cards stack in their lane.

    Click a card to select it (`selected` = its index; a click on an empty lane clears it); drag it
    sideways to move it in time (snapped to 0.1 s, kept within 0..duration_s; span cards keep their
    length). Each is sent once, on release, and fires `.change` (when the value differs; it also
    fires when Python sets the value), `.input` (page edits only) and `.select` with `gr.SelectData` (`index` = the
    card's index or None, `value` = the card without its `path`, which Gradio refuses in event
    data; `selected` = False when cleared).
    """
    kw.setdefault("apply_default_css", False)
    value = value if value is not None else {"duration_s": 4.0, "cards": [], "selected": None, "thumbs": {}}
    return gr.HTML(value, html_template='<div class="cp-strip"></div>', css_template=_STRIP_CSS,
                   js_on_load=_STRIP_JS, elem_id=elem_id, **kw)
