// The Library's hover-play (studio/pages/library.py): while the pointer is on a thumbnail, its video plays over it,
// muted. props.value maps a video's number to its file's URL (the server's videos folder); nothing else is fetched.
let shown = null;   // the <video> playing now
const stop = () => { if (shown) { shown.remove(); shown = null; } };
document.addEventListener('mouseover', e => {
  const item = e.target.closest ? e.target.closest('#lib-gallery .thumbnail-item') : null;
  if (!item) { stop(); return; }
  if (shown && shown.parentElement === item) return;
  stop();
  const m = /#(\d+)\b/.exec(item.textContent || '');   // the caption: "★ #12 remix: …"
  const url = m && props.value && props.value[m[1]];
  if (typeof url !== 'string' || !url.startsWith('/gradio_api/file=')) return;
  shown = document.createElement('video');
  Object.assign(shown, {muted: true, loop: true, autoplay: true, playsInline: true, src: url});
  shown.className = 'cp-hover-play';
  item.appendChild(shown);
  shown.play().catch(() => {});
});
