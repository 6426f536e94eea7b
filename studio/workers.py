"""Workers: where the studio's jobs run. The library (SQLite, in the studio's process) stays the one truth
of every job's state; a worker only runs what it is handed and says what happens.

A pool of workers for one backend speaks this protocol (studio/jobs.py is its one caller):

    pool.slots()                  -> how many jobs it can start now
    pool.wait_slot(timeout)       -> True once slots() > 0 (False when timeout passed first)
    pool.submit(task, events)     -> returns at once; events(dict) is called from another thread, in order:
                                     {"state": "started", "worker": "..."}   the backend is loaded, sampling starts
                                     {"step": k}                              denoising step k of task.settings.steps
                                     {"preview": b"<jpeg>"}                   the current estimate, small
                                     and last exactly one of
                                     {"end": "done", "clips": [...]}          (N, H, W, 3) uint8 arrays, or Encoded
                                                        (+ "sounds": [(samples, rate) or None] beside arrays)
                                     {"end": "failed", "error": "one sentence"}
                                     {"end": "cancelled", "step": k, "asked_at": j}  k steps done, j when asked
                                     {"end": "interrupted", "error": "why"}   the worker died under the job
    pool.cancel(job_id)           -> ask a submitted job to stop at its next check (every phase and step)
    pool.check()                  -> InputError when no worker of this pool could ever run a job (at submit)
    pool.close()

Two pools: `InProcess` here (the default: one job at a time on a thread of the studio, the backend loaded
once), and `studio.workers_ray.RayPool` (one Ray actor per worker, on any node of a cluster).
"""
from __future__ import annotations

import io
import queue
import tempfile
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path

from engine.params import OUT_OF_MEMORY, InputError, out_of_memory

PREVIEW_EVERY = 2   # steps between preview decodes (a decode costs about one step)
PREVIEW_SIDE = 96   # longest side of a step preview in pixels


@dataclass
class Task:
    """One job as a worker gets it: the timeline already built and checked by the studio (its seed drawn, its
    media paths the studio's), and the sampling settings. A pool whose workers do not share the studio's disk
    ships the media files with it."""
    job_id: int
    timeline: object     # engine.timeline.Timeline
    settings: object     # engine.api.Settings
    model: bool          # False for a pure re-cut: no backend is loaded


@dataclass
class Encoded:
    """A finished clip encoded where it was made (a remote worker): its mp4 and thumbnail travel, not frames."""
    mp4: bytes
    thumb: bytes
    frames: int
    width: int
    height: int


def describe(e: BaseException) -> str:
    """An exception as the one sentence a job's error shows (a traceback goes to the log for a bug)."""
    if isinstance(e, InputError):
        return str(e).splitlines()[0]
    if out_of_memory(e):
        return OUT_OF_MEMORY
    traceback.print_exception(e)
    return f"{e.__class__.__name__}: {e}"


class CancelFlag(threading.Event):
    """A running job's cancel token on its worker, which remembers how far the job was when the cancel landed:
    the cancelled event carries both, so "stops within one denoising step" is a fact the worker reports."""

    def __init__(self):
        super().__init__()
        self.step = 0            # denoising steps done (run_task's progress keeps it)
        self.asked_at = None     # steps done when set() first landed

    def set(self):
        if self.asked_at is None:
            self.asked_at = self.step
        super().set()


def end_of(e: BaseException, cancel: CancelFlag) -> dict:
    """The last event of a job that raised: cancelled when it was asked to stop, else failed."""
    from engine.sampler import Cancelled
    if isinstance(e, Cancelled) or cancel.is_set():
        return {"end": "cancelled", "step": cancel.step, "asked_at": cancel.asked_at}
    return {"end": "failed", "error": describe(e)[:500]}


def run_task(task: Task, get_backend, emit, cancel: CancelFlag, worker: str = "in-process") -> tuple[list, list]:
    """Worker side of one job: load the backend (once per worker: get_backend caches it), then encode, denoise
    and decode, emitting started / step / preview events -> (task.timeline.variations clips (N, H, W, 3) uint8,
    their sounds: (samples, rate) where the settings keep one and the model made it, else None).
    Raises Cancelled at the next check once `cancel` is set."""
    from engine.api import check_cancel, generate, made_sounds
    check_cancel(cancel, "before loading the model")
    backend = get_backend() if task.model else None
    check_cancel(cancel, "after loading the model")
    emit({"state": "started", "worker": worker})

    def progress(d):
        cancel.step = d["step"]
        emit({"step": d["step"]})
        if d["step"] % PREVIEW_EVERY == 0 or d["step"] == 1:
            jpeg = preview_jpeg(backend, d["denoised"])
            if jpeg is not None:
                emit({"preview": jpeg})
    clips = generate(task.timeline, backend, task.settings, callback=progress if backend else None, cancel=cancel)
    return clips, made_sounds(task.timeline, backend, task.settings)


def preview_jpeg(backend, denoised) -> bytes | None:
    """The current estimate of variation 0, middle frame, as a small JPEG (None when it fails: not fatal).

    denoised: (B, C, F, h, w) latents."""
    import torch
    from PIL import Image

    from engine.video_io import from_tensor
    try:
        z = denoised[:1, :, denoised.shape[2] // 2:denoised.shape[2] // 2 + 1]     # (1, C, 1, h, w)
        with torch.no_grad():
            frame = from_tensor(backend.decode(z)[0, :, :1])[0]                       # (H, W, 3)
        im = Image.fromarray(frame)
        im.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))  # small once here: the page embeds it on every poll
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=80)
        return buf.getvalue()
    except Exception:
        return None


def encode_clip(frames, fps: float, sound=None) -> Encoded:
    """(N, H, W, 3) uint8 (and its sound, or None) -> the mp4 and middle-frame thumbnail the library would write,
    as bytes."""
    from PIL import Image

    from engine.video_io import write_video
    with tempfile.TemporaryDirectory(prefix="cinepatch-clip-") as d:
        mp4 = write_video(Path(d) / "clip.mp4", frames, fps, overwrite=True, audio=sound).read_bytes()
    buf = io.BytesIO()
    Image.fromarray(frames[len(frames) // 2]).save(buf, format="JPEG", quality=85)
    n, h, w = frames.shape[:3]
    return Encoded(mp4, buf.getvalue(), int(n), int(w), int(h))


class Slots:
    """Free-slot bookkeeping a pool shares with the dispatcher that waits on it."""

    def __init__(self):
        self._cond = threading.Condition()

    def changed(self):
        with self._cond:
            self._cond.notify_all()

    def wait_slot(self, timeout: float | None = None) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.slots() > 0, timeout)

    def slots(self) -> int:
        raise NotImplementedError


class InProcess(Slots):
    """The default pool: one worker, a thread of the studio's own process, running one job at a time with the
    backend get_backend() loads (once)."""

    def __init__(self, name: str, get_backend):
        super().__init__()
        self.name, self._get_backend = name, get_backend
        self._tasks: queue.Queue = queue.Queue()
        self._cancel: dict[int, CancelFlag] = {}
        self._busy = False
        threading.Thread(target=self._run, name=f"cinepatch-jobs-{name}-worker", daemon=True).start()

    def slots(self) -> int:
        return 0 if self._busy else 1

    def submit(self, task: Task, events) -> None:
        with self._cond:
            self._busy = True
            self._cancel[task.job_id] = CancelFlag()
        self._tasks.put((task, events))

    def cancel(self, job_id: int) -> None:
        ev = self._cancel.get(int(job_id))
        if ev is not None:
            ev.set()

    def check(self) -> None:
        pass

    def close(self) -> None:
        pass

    def _run(self):
        while True:
            task, events = self._tasks.get()
            cancel = self._cancel[task.job_id]
            try:
                try:
                    clips, sounds = run_task(task, self._get_backend, events, cancel)
                    end = {"end": "done", "clips": clips, "sounds": sounds}
                except Exception as e:  # one job failing must never stop the worker
                    end = end_of(e, cancel)
                events(end)  # the studio attaches the clips on this thread: the slot frees after
            finally:
                with self._cond:
                    self._cancel.pop(task.job_id, None)
                    self._busy = False
                    self._cond.notify_all()
