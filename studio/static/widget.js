// Helpers every widget's js_on_load starts with (studio/widgets.py puts this file before the widget's own).
const clamp = (x, lo, hi) => Math.min(hi, Math.max(lo, x));
const r3 = x => Math.round(x * 1000) / 1000;
const fmt = s => `${r3(s)} s`;
function div(cls, parent, text) {
  const n = document.createElement('div');
  n.className = cls;
  if (text !== undefined) n.textContent = text;
  if (parent) parent.appendChild(n);
  return n;
}
// what a drag source (a Library clip, the Storyboard's picked media) carries: its reference, lib:<id> or upload:<name>
const REF_TYPE = 'text/x-cinepatch-ref';
