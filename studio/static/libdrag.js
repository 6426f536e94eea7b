// Library clips drag onto the Storyboard's timeline (issue 21; studio/pages/library.py): a gallery thumbnail
// carries its video's reference (its caption starts "#<id>"), and a drag held over the Storyboard tab opens it,
// where the strip takes the drop.
const galleryItem = t => (t && t.closest ? t.closest('#lib-gallery .thumbnail-item') : null);
for (const type of ['mouseover', 'pointerdown']) {
  document.addEventListener(type, e => { const item = galleryItem(e.target); if (item) item.draggable = true; }, true);
}
document.addEventListener('dragstart', e => {
  const item = galleryItem(e.target), m = item && /#(\d+)\b/.exec(item.textContent || '');
  if (!m) return;
  e.dataTransfer.setData(REF_TYPE, `lib:${m[1]}`);
  e.dataTransfer.setData('text/plain', `#${m[1]}`);
  e.dataTransfer.effectAllowed = 'copy';
}, true);
function springOpen(e) {
  const tab = e.target && e.target.closest ? e.target.closest('[role=tab]') : null;
  if (!tab || !e.dataTransfer || ![...e.dataTransfer.types].includes(REF_TYPE)) return;
  if (tab.textContent.trim() === 'Storyboard' && tab.getAttribute('aria-selected') !== 'true') tab.click();
}
document.addEventListener('dragenter', springOpen);
document.addEventListener('dragover', springOpen);
