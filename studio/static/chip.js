// The Storyboard's picked media as a chip to drag onto the timeline strip (studio/widgets.py media_chip).
const root = element.querySelector('.cp-chip');
function draw() {
  const v = props.value && typeof props.value === 'object' ? props.value : {};
  const ref = typeof v.ref === 'string' ? v.ref : '';
  root.replaceChildren();
  root.draggable = !!ref;
  root.dataset.ref = ref;
  root.classList.toggle('cp-chip-empty', !ref);
  if (ref && typeof v.thumb === 'string' && v.thumb.startsWith('data:image/')) {
    const img = document.createElement('img');
    Object.assign(img, {src: v.thumb, alt: '', draggable: false});
    root.appendChild(img);
  }
  div('cp-chip-label', root, ref ? `${v.name || ref}: drag onto the timeline`
                                 : 'Pick or upload media above, then drag it onto the timeline');
}
root.addEventListener('dragstart', e => {
  if (!root.dataset.ref) { e.preventDefault(); return; }
  e.dataTransfer.setData(REF_TYPE, root.dataset.ref);
  e.dataTransfer.setData('text/plain', root.dataset.ref);
  e.dataTransfer.effectAllowed = 'copy';
});
watch('value', draw);
draw();
