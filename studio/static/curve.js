// The Blend tab's curve editor (studio/widgets.py curve_editor): props.value, trigger and watch are Gradio's
// gr.HTML js_on_load globals.
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
