// The job list (studio/pages/jobs_list.py): a queued or running job's own Cancel, and a click on a job opening
// its result. Delegated from the list's element, so rows redrawn by every poll need no listeners of their own.
element.addEventListener('click', (e) => {
  const cancel = e.target.closest('[data-cancel]');
  const row = e.target.closest('.cp-job[data-job]');
  if (cancel) trigger('click', {job: Number(cancel.dataset.cancel), action: 'cancel'});
  else if (row) trigger('click', {job: Number(row.dataset.job), action: 'open'});
});
