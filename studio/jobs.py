"""Jobs: every generation is queued, run one at a time per backend on a worker thread, and
reported through the library (state, step) and a preview image per job.

    q = Jobs(library, "toy")
    job = q.submit("generate", {"prompt": "a red circle moving left", "steps": 8})
    q.wait(job)          # -> the job row, state "done"; library.videos_of_job(job) has the clips
"""
from __future__ import annotations

import queue
import threading
import time
import traceback

from engine.params import OUT_OF_MEMORY, InputError, out_of_memory

PREVIEW_EVERY = 2   # steps between preview decodes (a decode costs about one step)
PREVIEW_SIDE = 96   # longest side of a step preview in pixels


class Jobs:
    def __init__(self, library, backend_name: str | None = None, loader=None):
        from engine.backends.registry import default_backend, load_backend
        self.library = library
        self.backend_name = backend_name or default_backend()
        self._loader = loader or (lambda: load_backend(self.backend_name))
        self._custom_loader = loader is not None
        self._backend = None
        self._spec = None
        self._load_lock = threading.Lock()
        self._queue: queue.Queue[int] = queue.Queue()
        self._cancel: dict[int, threading.Event] = {}
        self._done: dict[int, threading.Event] = {}
        self._submit_lock = threading.Lock()
        for job in reversed(library.jobs(("queued",), limit=1_000_000)):  # left queued by a restart: resume, oldest first
            if job["backend"] == self.backend_name:
                self._enqueue(job["id"])
        self._worker = threading.Thread(target=self._run, name=f"cinepatch-jobs-{self.backend_name}", daemon=True)
        self._worker.start()

    @property
    def backend(self):
        with self._load_lock:  # the page and the worker may both ask first
            if self._backend is None:
                self._backend = self._loader()
            return self._backend

    @property
    def spec(self):
        """The backend's LatentSpec; read from its configs, not by loading it, while the model is not loaded."""
        from engine.backends.registry import spec_of
        if self._backend is not None or self._custom_loader:  # a custom loader's spec is only known by loading
            return self.backend.spec
        if self._spec is None:
            self._spec = spec_of(self.backend_name)
        return self._spec

    # ------------------------------------------------------------------ API
    def check(self, op: str, request: dict):
        """Build the request (and its sampling settings) now so bad input is refused at once, not minutes later."""
        from engine.api import resolve_settings
        from engine.requests import build
        # The spec gives the memory limit; a custom loader's spec is only known by loading it: not at submit.
        spec = None if self._custom_loader and self._backend is None else self.spec
        tl, explicit, lineage = build(op, request, self.library.resolve, spec=spec)
        resolve_settings(tl, explicit)
        return tl, explicit, lineage

    def submit(self, op: str, request: dict, label: str | None = None) -> int:
        tl, _, _ = self.check(op, request)
        label = label or _label(op, request, tl)
        with self._submit_lock:  # ids and queue order agree, however many submit at once
            job = self.library.add_job(op, request, label, self.backend_name)
            self._enqueue(job)
        return job

    def _enqueue(self, job: int):
        self._cancel[job], self._done[job] = threading.Event(), threading.Event()
        self._queue.put(job)

    def retry(self, job_id: int) -> int:
        """An interrupted, failed or cancelled job, queued again with the same request."""
        old = self.library.job(job_id)
        if old is None:
            raise InputError(f"job: {job_id} does not exist")
        return self.submit(old["op"], old["request"], old["label"])

    def cancel(self, job_id: int) -> bool:
        """Ask a job to stop; returns at once -> False when it is not queued or running.

        A queued job ends here (queued -> cancelled, compare-and-set: the worker's queued -> running
        can only win before it). A running job is flagged; its worker ends it at its next check (each
        phase and step) and writes no video: wait() says cancelled once the worker has stopped."""
        job_id = int(job_id)
        if self.library.transition(job_id, "queued", "cancelled", finished=time.time()):
            self._token(job_id).set()
            done = self._done.get(job_id)
            if done is not None:
                done.set()
            return True
        if self.library.request_cancel(job_id):
            self._token(job_id).set()
            return True
        return False

    def _token(self, job_id: int) -> threading.Event:
        """The job's cancel token (a fresh one for a job this queue never held: nothing reads it)."""
        return self._cancel.get(job_id) or threading.Event()

    def wait(self, job_id: int, timeout: float | None = None) -> dict:
        """The job's row once it is over (done, failed, cancelled; or when timeout passes first)."""
        ev = self._done.get(int(job_id))
        if ev is not None:
            ev.wait(timeout)
        return self.library.job(job_id)

    def preview_path(self, job_id: int):
        p = self.library.preview_file(job_id)
        return p if p.exists() else None

    # ------------------------------------------------------------------ worker
    def _run(self):
        from engine.sampler import Cancelled
        while True:
            job_id = self._queue.get()
            cancel = self._cancel[job_id]
            try:
                self._one(job_id, cancel)
            except Exception as e:  # one job failing must never stop the queue
                if isinstance(e, Cancelled) or cancel.is_set():
                    self.library.transition(job_id, "running", "cancelled", finished=time.time())
                else:
                    self._fail(job_id, e)
            finally:
                self._cancel.pop(job_id, None)
                self._done.pop(job_id, threading.Event()).set()
                if self.library.job(job_id) is None:  # deleted while it ran: its last preview goes too
                    self.library.preview_file(job_id).unlink(missing_ok=True)

    def _fail(self, job_id: int, e: Exception):
        msg = str(e).splitlines()[0] if isinstance(e, InputError) else \
            OUT_OF_MEMORY if out_of_memory(e) else f"{e.__class__.__name__}: {e}"
        if not isinstance(e, InputError) and not out_of_memory(e):
            traceback.print_exc()
        for src in ("running", "queued"):  # queued: it failed before it could start
            if self.library.transition(job_id, src, "failed", error=msg[:500], finished=time.time()):
                break

    def _one(self, job_id: int, cancel: threading.Event):
        """Run one job; Cancelled (from any phase) ends it cancelled. Only this thread ends a running job."""
        from engine.api import check_cancel, generate, needs_model, resolve_settings, sidecar
        from engine.requests import build
        from engine.sampler import Cancelled
        lib = self.library
        # 1. claim it: a cancel that landed since it was queued has already ended it
        if not lib.transition(job_id, "queued", "running", started=time.time()):
            return
        job = lib.job(job_id)
        if job is None:  # deleted the moment it started
            return
        # 2. read the request and its media, load the model
        tl, explicit, lineage = build(job["op"], job["request"], lib.resolve)
        settings = resolve_settings(tl, explicit)
        check_cancel(cancel, "before loading the model")
        backend = self.backend if needs_model(tl) else None
        check_cancel(cancel, "after loading the model")
        lib.update_job(job_id, steps=settings.steps if backend else 0)
        # 3. encode, denoise, decode (the engine checks the token at each phase and step)
        clips = generate(tl, backend, settings, callback=self._progress(job_id, backend), cancel=cancel)
        # 4. write the clips under temp names, then attach them and end the job in one transaction
        staged = []
        try:
            for k, clip in enumerate(clips):
                check_cancel(cancel, "before writing to the library")
                meta = sidecar(tl, self.backend_name if backend else "none", settings, k)
                staged.append(lib.stage_video(job["op"], job["label"], clip, tl.fps, meta, lineage))
            check_cancel(cancel, "before writing to the library")
        except BaseException:
            lib.discard(staged)
            raise
        if not lib.finish_job(job_id, staged, step=settings.steps if backend else 0, finished=time.time()):
            raise Cancelled("cancelled (or deleted) before its videos were attached")

    def _progress(self, job_id: int, backend):
        if backend is None:
            return None
        out = self.library.preview_file(job_id)

        def cb(d):
            self.library.update_job(job_id, step=d["step"])
            if d["step"] % PREVIEW_EVERY == 0 or d["step"] == 1:
                _write_preview(backend, d["denoised"], out)
        return cb


def _write_preview(backend, denoised, out):
    """The current estimate of variation 0, middle frame, as a small JPEG (a failed preview is not fatal)."""
    import torch
    from PIL import Image

    from engine.video_io import from_tensor
    try:
        z = denoised[:1, :, denoised.shape[2] // 2:denoised.shape[2] // 2 + 1]     # (1, C, 1, h, w)
        with torch.no_grad():
            frame = from_tensor(backend.decode(z)[0, :, :1])[0]                       # (H, W, 3)
        tmp = out.with_name(out.name + ".part")
        im = Image.fromarray(frame)
        im.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))  # small once here: the page embeds it on every poll
        im.save(tmp, format="JPEG", quality=80)
        tmp.replace(out)
    except Exception:
        pass


def _label(op: str, req: dict, tl) -> str:
    """What a person would call this job in a list."""
    text = req.get("prompt") or req.get("prompt_b") or req.get("prompt_a") or ""
    if op == "storyboard":
        text = " | ".join(c.text for c in tl.cards if c.kind == "text")
    words = {"generate": "", "storyboard": "storyboard: ", "remix": "remix: ", "blend": "blend: ",
             "loop": "loop: ", "extend": "extend: ", "recut": "re-cut: "}  # the prompt follows a space
    return (words[op] + text).strip() if text.strip() else words[op].rstrip(": ") or "untitled"
