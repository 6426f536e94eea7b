"""The job list above the tabs: every queued or running job with its own Cancel, then the latest finished ones;
a click on a job opens its result in the tab that makes its kind (issue 21, finding 10)."""
from __future__ import annotations

import base64
import html
from pathlib import Path

from engine.params import InputError
from studio.pages.results import KIND_TAB

JS = (Path(__file__).parent.parent / "static" / "jobs.js").read_text(encoding="utf-8")
ENDED = ("done", "failed", "cancelled", "interrupted")


def render(studio, recent: int = 3) -> str:
    """The list as HTML: the running and queued jobs (each with Cancel), then the `recent` latest ended ones."""
    lib = studio.library
    jobs = lib.jobs(("queued", "running"), limit=50) + lib.jobs(ENDED, limit=recent)
    if not jobs:
        return "<div class='cp-jobs'><span class='cp-state'>No jobs yet.</span></div>"
    return "<div class='cp-jobs'>" + "".join(_row(studio, j) for j in jobs) + "</div>"


def _row(studio, j: dict) -> str:
    frac = j["step"] / j["steps"] if j["steps"] else (1.0 if j["state"] == "done" else 0.0)
    prev = studio.jobs.preview_path(j["id"])
    img = "<span class='cp-thumb'></span>"   # no picture yet (queued), or none made (a re-cut runs no model)
    if prev and j["state"] in ("running", "done"):  # already a small JPEG (studio/jobs.py): embed as is
        img = f"<img alt='' src='data:image/jpeg;base64,{base64.b64encode(prev.read_bytes()).decode()}'>"
    extra = f" — {html.escape(j['error'])}" if j["error"] else ""
    steps = f" · step {j['step']}/{j['steps']}" if j["state"] == "running" and j["steps"] else ""
    cancel = (f"<button class='cp-cancel' data-cancel='{j['id']}' title='Cancel this job'>Cancel</button>"
              if j["state"] in ("queued", "running") else "")
    return (f"<div class='cp-job' data-job='{j['id']}' data-state='{j['state']}'>{img}<div class='cp-body'>"
            f"<div class='cp-label'>{html.escape(studio.job_name(j))}</div>"
            f"<div class='cp-state'>{j['state']}{steps}{extra}</div>"
            f"<div class='cp-bar'><div style='width:{100 * frac:.0f}%'></div></div></div>{cancel}</div>")


def act(studio, job_id, action: str) -> tuple[dict | None, str]:
    """A click in the list -> (the job the page should now show, or None; what to say).

    "cancel" cancels that job, and only it (whatever the model, however many run); "open" shows its result
    in its tab (a finished job's at the next poll, with its Done toast; a running one's when it ends)."""
    job = studio.library.job(int(job_id)) if str(job_id).isdigit() else None
    if job is None:
        raise InputError(f"job: job {job_id} is not in the list any more")
    if action == "cancel":
        if not studio.cancel(job["id"]):
            raise InputError(f"job: job {job['id']} has already ended")
        return None, f"Cancelling job {job['id']}"
    return {"job": job["id"], "tab": KIND_TAB.get(job["op"], "create")}, ""
