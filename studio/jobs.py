"""Jobs: every generation is queued and handed to a pool of workers (studio/workers.py: by default one
job at a time per backend on a thread of this process; with `--ray`, Ray actors on a cluster), and
reported through the library (state, step) and a preview image per job. The library is the one truth:
only this class moves a job's state, the workers only say what happened.

    q = Jobs(library, "toy")
    job = q.submit("generate", {"prompt": "a red circle moving left", "steps": 8})
    q.wait(job)          # -> the job row, state "done"; library.videos_of_job(job) has the clips
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass

from engine.params import InputError
from studio.workers import Encoded, InProcess, Task, describe

# A running job's step reaches the library at most this often (and its last step always): a write for every
# step makes the one SQLite writer the cap of a cluster (docs/cluster.md, "Where the studio becomes the
# bottleneck"); the page and the Videos API poll about once a second anyway.
PROGRESS_EVERY_S = 1.0


@dataclass
class _Running:
    """What the studio keeps of a job a worker runs: enough to attach its clips when they come back, and its
    progress (the step last heard of, and when one was last written)."""
    job: dict
    task: Task
    lineage: dict
    step: int = 0
    written: float = float("-inf")


class Jobs:
    clock = staticmethod(time.monotonic)   # of progress writes (a test holds it still)

    def __init__(self, library, backend_name: str | None = None, loader=None, workers=None, memory: str | None = None):
        """memory: a real model's memory setting (engine/backends/memory.py) for its load; None: its default."""
        from engine.backends.registry import default_backend, load_backend
        self.library = library
        self.backend_name = backend_name or default_backend()
        self.memory = memory
        self._loader = loader or (lambda: load_backend(self.backend_name, **({"memory": memory} if memory else {})))
        self._custom_loader = loader is not None
        self._backend = None
        self._spec = None
        self._load_lock = threading.Lock()
        self.workers = workers or InProcess(self.backend_name, lambda: self.backend)
        self._queue: queue.Queue[int] = queue.Queue()
        self._cancel: dict[int, threading.Event] = {}
        self._done: dict[int, threading.Event] = {}
        self._running: dict[int, _Running] = {}
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
    def loaded(self):
        """The backend when it is loaded, else None (nothing is loaded to answer)."""
        return self._backend

    def unload(self):
        """Let the loaded model go, so its weights (on a GPU) are freed before another copy loads."""
        with self._load_lock:
            self._backend = None

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
        from engine.api import check_sound, resolve_settings
        from engine.requests import build
        self.workers.check()  # a job no worker could ever run (more GPUs than any node has) is refused here
        # The spec gives the memory limit; a custom loader's spec is only known by loading it: not at submit.
        spec = None if self._custom_loader and self._backend is None else self.spec
        tl, explicit, lineage = build(op, request, self.library.resolve, spec=spec)
        check_sound(tl, resolve_settings(tl, explicit), self.backend_name)
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

        A queued job ends here (queued -> cancelled, compare-and-set: the dispatcher's queued -> running
        can only win before it). A running job is flagged and its worker told; the job ends at the worker's
        next check (each phase and step) and writes no video: wait() says cancelled once it has stopped."""
        job_id = int(job_id)
        if self.library.transition(job_id, "queued", "cancelled", finished=time.time()):
            self._token(job_id).set()
            done = self._done.get(job_id)
            if done is not None:
                done.set()
            return True
        if self.library.request_cancel(job_id):
            self._token(job_id).set()
            self.workers.cancel(job_id)
            return True
        return False

    def _token(self, job_id: int) -> threading.Event:
        """The job's cancel token (a fresh one for a job this queue never held: nothing reads it)."""
        return self._cancel.get(job_id) or threading.Event()

    def wait(self, job_id: int, timeout: float | None = None) -> dict:
        """The job's row once it is over (done, failed, cancelled, interrupted; or when timeout passes first)."""
        ev = self._done.get(int(job_id))
        if ev is not None:
            ev.wait(timeout)
        return self.library.job(job_id)

    def preview_path(self, job_id: int):
        p = self.library.preview_file(job_id)
        return p if p.exists() else None

    # ------------------------------------------------------------------ dispatcher
    def _run(self):
        """Hand queued jobs, oldest first, to the workers as slots free up."""
        while True:
            job_id = self._queue.get()
            while not self.workers.wait_slot(timeout=1.0):  # a worker may also come back (restarted) on its own
                pass
            try:
                if self._start(job_id):
                    continue
            except Exception as e:  # one job failing must never stop the queue
                self._abort(job_id, e)
            self._close(job_id)

    def _start(self, job_id: int) -> bool:
        """Claim a job and hand it to a worker -> False when it is not to run (cancelled, deleted)."""
        from engine.api import needs_model, resolve_settings
        from engine.requests import build
        lib = self.library
        # 1. claim it: a cancel that landed since it was queued has already ended it
        if not lib.transition(job_id, "queued", "running", started=time.time()):
            return False
        job = lib.job(job_id)
        if job is None:  # deleted the moment it started
            return False
        # 2. read the request and its media here, where the library is: the worker gets a built timeline
        tl, explicit, lineage = build(job["op"], job["request"], lib.resolve)
        settings = resolve_settings(tl, explicit)
        task = Task(job_id, tl, settings, needs_model(tl))
        lib.update_job(job_id, steps=settings.steps if task.model else 0)
        self._running[job_id] = _Running(job, task, lineage)
        # 3. run it: events come back on another thread, the last one ends the job
        self.workers.submit(task, lambda ev: self._event(job_id, ev))
        if self._token(job_id).is_set():  # a cancel that came while it was being handed over
            self.workers.cancel(job_id)
        return True

    def _event(self, job_id: int, ev: dict):
        """One event of a running job from its worker (the worker's thread, in order)."""
        if "step" in ev:
            self._progress(job_id, int(ev["step"]))
        if "preview" in ev:
            self._save_preview(job_id, ev["preview"])
        if "end" not in ev:
            return
        try:
            self._end(job_id, ev)
        except Exception as e:
            self._abort(job_id, e)
        finally:
            self._close(job_id)

    def _progress(self, job_id: int, step: int):
        run = self._running.get(job_id)
        if run is None:
            return
        run.step, now = step, self.clock()
        if now - run.written >= PROGRESS_EVERY_S:
            run.written = now
            self.library.update_job(job_id, step=step)

    def _end(self, job_id: int, ev: dict):
        from engine.sampler import Cancelled
        lib, now, run = self.library, time.time(), self._running.get(job_id)
        if ev["end"] != "done" and run is not None:   # the last step heard of, which the throttle may have held
            lib.update_job(job_id, step=int(ev.get("step", run.step)))
        if ev["end"] == "done":
            self._attach(job_id, ev["clips"], ev.get("sounds"))
        elif ev["end"] == "cancelled":
            lib.transition(job_id, "running", "cancelled", finished=now)
        elif ev["end"] == "interrupted":  # the worker died under it: a cancel asked for still counts
            if (lib.job(job_id) or {}).get("cancel_requested"):
                raise Cancelled("its worker stopped after a cancel")
            from studio.library import worker_lost
            lib.transition(job_id, "running", "interrupted", error=worker_lost(ev.get("error", "")), finished=now)
        else:
            self._fail(job_id, ev.get("error") or "the worker gave no reason")

    def _attach(self, job_id: int, clips: list, sounds: list | None = None):
        """Write the clips (with their sounds, if any) under temp names, then attach them and end the job in one
        transaction."""
        from engine.api import check_cancel, sidecar
        from engine.sampler import Cancelled
        lib, run, cancel = self.library, self._running[job_id], self._token(job_id)
        tl, settings, model = run.task.timeline, run.task.settings, run.task.model
        staged = []
        try:
            for k, clip in enumerate(clips):
                check_cancel(cancel, "before writing to the library")
                meta = sidecar(tl, self.backend_name if model else "none", settings, k)
                args = (run.job["op"], run.job["label"])
                staged.append(lib.stage_encoded(*args, clip, tl.fps, meta, run.lineage) if isinstance(clip, Encoded)
                              else lib.stage_video(*args, clip, tl.fps, meta, run.lineage,
                                                   audio=sounds[k] if sounds else None))
            check_cancel(cancel, "before writing to the library")
        except BaseException:
            lib.discard(staged)
            raise
        if not lib.finish_job(job_id, staged, step=settings.steps if model else 0, finished=time.time()):
            raise Cancelled("cancelled (or deleted) before its videos were attached")

    def _abort(self, job_id: int, e: Exception):
        """A job that raised in the studio's own hands: cancelled when asked to stop, else failed."""
        from engine.sampler import Cancelled
        if isinstance(e, Cancelled) or self._token(job_id).is_set() or \
                (self.library.job(job_id) or {}).get("cancel_requested"):
            self.library.transition(job_id, "running", "cancelled", finished=time.time())
        else:
            self._fail(job_id, describe(e))

    def _fail(self, job_id: int, msg: str):
        for src in ("running", "queued"):  # queued: it failed before it could start
            if self.library.transition(job_id, src, "failed", error=msg[:500], finished=time.time()):
                break

    def _close(self, job_id: int):
        self._running.pop(job_id, None)
        self._cancel.pop(job_id, None)
        self._done.pop(job_id, threading.Event()).set()
        if self.library.job(job_id) is None:  # deleted while it ran: its last preview goes too
            self.library.preview_file(job_id).unlink(missing_ok=True)

    def _save_preview(self, job_id: int, jpeg: bytes):
        out = self.library.preview_file(job_id)
        tmp = out.with_name(out.name + ".part")
        tmp.write_bytes(jpeg)
        tmp.replace(out)


def _label(op: str, req: dict, tl) -> str:
    """What a person would call this job in a list."""
    text = req.get("prompt") or req.get("prompt_b") or req.get("prompt_a") or ""
    if op == "storyboard":
        text = " | ".join(c.text for c in tl.cards if c.kind == "text")
    from engine.requests import OPS
    word = OPS[op].word
    if not text.strip():
        return word or "untitled"
    return f"{word}: {text.strip()}" if word else text.strip()
