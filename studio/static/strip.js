// The Storyboard's timeline strip (studio/widgets.py timeline_strip), run by Gradio's gr.HTML js_on_load.
const root = element.querySelector('.cp-strip');
const LANES = [['text', 'Text'], ['image', 'Image'], ['video', 'Video']];
const ROW = 30, LANE_H = {image: 52, video: 48}, SNAP = 0.1;
let drag = null;   // {i, x0, width, el, moved, id, edge} while a card is held; edge 'start'/'end' when resizing

const isSpan = c => c.kind !== 'image';
function state() {
  const v = props.value && typeof props.value === 'object' ? props.value : {};
  return {duration: Math.max(0.1, +v.duration_s || 1), cards: Array.isArray(v.cards) ? v.cards : [],
          selected: Number.isInteger(v.selected) ? v.selected : null, thumbs: v.thumbs || {}};
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
      // its edges resize it: a handle at each end
      for (const edge of ['start', 'end']) div(`cp-edge cp-edge-${edge}`, n).dataset.edge = edge;
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
  const v = Object.assign({}, props.value, next);
  if (!next.drop) delete v.drop;   // a drop is said once: a later edit must not add its card again
  props.value = v;
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
  const snap = s => r3(Math.round(s / SNAP) * SNAP);
  // an edge held: that end moves, the other stays; a card is at least SNAP long
  if (held.edge === 'start') return {start_s: clamp(snap(c.start_s + dt), 0, r3(c.end_s - SNAP)), end_s: c.end_s};
  if (held.edge === 'end') return {start_s: c.start_s, end_s: clamp(snap(c.end_s + dt), r3(c.start_s + SNAP), d)};
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
  const edge = e.target.closest('.cp-edge');
  drag = {i: +card.dataset.i, x0: e.clientX, width: card.parentElement.clientWidth || 1, el: card,
          moved: false, id: e.pointerId, edge: edge ? edge.dataset.edge : null};
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
  if (to.end_s !== undefined) drag.el.style.width = `${(to.end_s - to.start_s) / d * 100}%`;
  const tip = drag.el.querySelector('.cp-tip') || div('cp-tip', drag.el);
  tip.textContent = drag.edge === 'end' ? fmt(to.end_s) : fmt(to.at_s ?? to.start_s);
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

// Drops (issue 21): a Library clip or the picked media (REF_TYPE, widget.js), or a file from the desktop, which is
// uploaded first. Python makes the card at the drop time, or refuses it and sends the strip as it is.
const dropping = e => e.dataTransfer && [...e.dataTransfer.types].some(t => t === REF_TYPE || t === 'Files');
function dropTime(e) {
  const track = root.querySelector('.cp-lane .cp-track'), d = state().duration;
  const box = track ? track.getBoundingClientRect() : {left: 0, width: 1};
  return r3(clamp(Math.round((e.clientX - box.left) / (box.width || 1) * d / SNAP) * SNAP, 0, d));
}
root.addEventListener('dragover', e => {
  if (!dropping(e)) return;
  e.preventDefault();   // accept it
  e.dataTransfer.dropEffect = 'copy';
  root.classList.add('cp-drop-over');
  root.dataset.dropAt = fmt(dropTime(e));
});
root.addEventListener('dragleave', e => { if (!root.contains(e.relatedTarget)) root.classList.remove('cp-drop-over'); });
root.addEventListener('drop', async e => {
  if (!dropping(e)) return;
  e.preventDefault();
  root.classList.remove('cp-drop-over');
  const at_s = dropTime(e), ref = e.dataTransfer.getData(REF_TYPE), file = e.dataTransfer.files[0];
  const sel = state().selected;
  if (ref) { commit({drop: {at_s, ref}}, sel); return; }
  if (!file) return;
  let sent;
  try { sent = {at_s, file: (await upload(file)).path}; }
  catch (err) { sent = {at_s, error: String(err && err.message || err).slice(0, 200)}; }   // too large, say
  commit({drop: sent}, sel);
});

let width = 0;   // redraw on width changes only (tick density); height follows the lanes
new ResizeObserver(() => {
  if (!drag && root.clientWidth !== width) { width = root.clientWidth; draw(); }
}).observe(root);
watch('value', () => { if (!drag) draw(); });
draw();
