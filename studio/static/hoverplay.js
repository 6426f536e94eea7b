// The Library's hover-play (studio/pages/library.py): while the pointer is on a thumbnail, its video plays over it,
// muted. props.value maps a video's number to its file's URL (the server's videos folder); nothing else is fetched.
let shown = null;     // the <video> playing now
let hovered = null;   // the thumbnail under the pointer
const stop = () => { if (shown) { shown.remove(); shown = null; } };
// A refresh can show a new thumbnail a moment before props.value knows its URL (a busy machine), and a pointer
// that rests on it sends no second mouseover: so look again every 250 ms while it stays there (up to 2 min).
const show = (item, tries) => {
  if (hovered !== item || (shown && shown.parentElement === item)) return;
  const m = /#(\d+)\b/.exec(item.textContent || '');   // the caption: "★ #12 remix: …"
  const url = m && props.value && props.value[m[1]];
  if (typeof url !== 'string' || !url.startsWith('/gradio_api/file=')) {
    if (tries > 0) setTimeout(() => show(item, tries - 1), 250);
    return;
  }
  stop();
  shown = document.createElement('video');
  Object.assign(shown, {muted: true, loop: true, autoplay: true, playsInline: true, src: url});
  shown.className = 'cp-hover-play';
  item.appendChild(shown);
  shown.play().catch(() => {});
};
document.addEventListener('mouseover', e => {
  const item = e.target.closest ? e.target.closest('#lib-gallery .thumbnail-item') : null;
  hovered = item;
  if (!item) { stop(); return; }
  if (shown && shown.parentElement === item) return;
  stop();
  show(item, 480);
});
