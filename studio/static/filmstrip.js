// Re-cut's filmstrip (studio/widgets.py filmstrip): frames of the clip with an in and an out handle, run by
// Gradio's gr.HTML js_on_load. A handle's new place is sent once, on release (.input and .change).
const root = element.querySelector('.cp-film');
const SNAP = 0.05;   // seconds
let drag = null;     // {edge: 'in' | 'out', id, v} while a handle is held

function state() {
  const v = props.value && typeof props.value === 'object' ? props.value : {};
  const d = Math.max(0, +v.duration_s || 0);
  const a = clamp(+v.in_s || 0, 0, d), b = clamp(v.out_s == null ? d : +v.out_s, 0, d);
  return {duration: d, frames: Array.isArray(v.frames) ? v.frames : [], in_s: a, out_s: Math.max(a, b)};
}
function draw() {
  const v = drag ? drag.v : state();
  root.replaceChildren();
  if (!v.duration) { div('cp-film-empty', root, 'Choose a video to see its frames'); return; }
  const film = div('cp-film-frames', root);
  for (const src of v.frames) {   // only inline images: nothing is fetched from anywhere
    if (typeof src !== 'string' || !src.startsWith('data:image/')) continue;
    const img = document.createElement('img');
    img.src = src;
    img.alt = '';
    film.appendChild(img);
  }
  const pct = s => `${s / v.duration * 100}%`;
  Object.assign(div('cp-film-shade', film).style, {left: '0', width: pct(v.in_s)});
  Object.assign(div('cp-film-shade', film).style, {left: pct(v.out_s), right: '0'});
  Object.assign(div('cp-film-window', film).style, {left: pct(v.in_s), width: pct(v.out_s - v.in_s)});
  for (const edge of ['in', 'out']) {
    const h = div(`cp-film-handle cp-film-${edge}`, film);
    h.dataset.edge = edge;
    h.title = `${edge} point: drag to trim`;
    h.style.left = pct(v[`${edge}_s`]);
  }
  div('cp-film-readout', root,
      `in ${fmt(v.in_s)} · out ${fmt(v.out_s)} · keeps ${fmt(v.out_s - v.in_s)} of ${fmt(v.duration)}`);
}
// the time under the pointer, snapped, kept at least SNAP away from the other handle
function timeAt(e, held) {
  const film = root.querySelector('.cp-film-frames').getBoundingClientRect();
  const v = held.v, t = Math.round((e.clientX - film.left) / (film.width || 1) * v.duration / SNAP) * SNAP;
  return held.edge === 'in' ? r3(clamp(t, 0, v.out_s - SNAP)) : r3(clamp(t, v.in_s + SNAP, v.duration));
}

root.addEventListener('pointerdown', e => {
  const h = e.target.closest('.cp-film-handle');
  if (e.button !== 0 || drag || !h) return;
  drag = {edge: h.dataset.edge, id: e.pointerId, v: state()};
  root.setPointerCapture(e.pointerId);
  e.preventDefault();
});
root.addEventListener('pointermove', e => {
  if (!drag || e.pointerId !== drag.id) return;
  drag.v = Object.assign({}, drag.v, {[`${drag.edge}_s`]: timeAt(e, drag)});
  draw();
});
function release(e) {
  if (!drag || e.pointerId !== drag.id) return;
  const held = drag;
  drag = null;
  if (e.type === 'pointerup') {
    // Gradio syncs props.value to Python (and fires change) only when it is given a new object.
    props.value = Object.assign({}, props.value, {in_s: held.v.in_s, out_s: held.v.out_s});
    trigger('input');
  }
  draw();
}
root.addEventListener('pointerup', release);
root.addEventListener('pointercancel', release);
watch('value', () => { if (!drag) draw(); });
draw();
