"""What every tab of the page shares: the `Studio` (library + job queues) its handlers call, the `Page` of
components one tab hands to another, and the small helpers each tab uses (source pickers, sampling fields,
a job queued, names of videos, messages in words)."""
from __future__ import annotations

import base64
import functools
import html
import inspect
import io
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr

from engine.params import PARAMS, InputError
from engine.requests import MEDIA as SOURCES  # the request fields that name media
from studio.jobs import Jobs
from studio.pages import controls as ctl
from studio.pages import results as results_mod

ASPECTS = ["16:9", "1:1", "9:16"]
RESOLUTIONS = [64, 96, 128, 192, 256, 384, 512, 720]
# Short sides each backend was made for (the engine snaps any size to what the model accepts).
BACKEND_RESOLUTIONS = {"toy": [64, 96, 128], "reference": [32, 64, 128], "ltx": [256, 384, 512, 704],
                       "wan": [480, 720]}
BACKEND_FPS = {"toy": 8, "reference": 8, "ltx": 24, "wan": 16}   # the frame rates the models were trained at
MEDIA_TYPES = [".mp4", ".mov", ".webm", ".mkv", ".gif", ".png", ".jpg", ".jpeg", ".webp"]


def data_uri(src, size: int = 160) -> str:
    """A small JPEG of an image file, or of a frame (H, W, 3) uint8, as a data: URI (nothing served from disk)."""
    from PIL import Image
    with (Image.open(src) if not hasattr(src, "shape") else Image.fromarray(src)) as im:
        im = im.convert("RGB")
        im.thumbnail((size, size))
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def memory_choices() -> list[str]:
    """Every memory setting memory.py allows, as it writes them ("none", "group+fp8+tiling", ...)."""
    from itertools import product

    from engine.backends.memory import FLAGS, OFFLOADS, Memory
    return [str(Memory(o, **dict(zip(FLAGS, bits)))) for o in OFFLOADS for bits in product((False, True),
                                                                                            repeat=len(FLAGS))]


def default_memory(name: str) -> str:
    """The memory setting a real model loads with when none is picked: $CINEPATCH_MEMORY (the server's --memory),
    else the backend's own default on the device the registry would put it on."""
    from engine.backends import memory
    return str(memory.parse(None, name, _device()))


def _device() -> str:
    from engine.backends.registry import default_device
    return default_device()


class Studio:
    """What the page's handlers share: the library and one job queue per backend (made on first use)."""

    def __init__(self, library, jobs, max_upload_mb: int = 200, make_jobs=None):
        self.library, self.max_upload_mb = library, max_upload_mb
        self.default = jobs.backend_name
        self.queues = {jobs.backend_name: jobs}
        self._make_jobs = make_jobs or (lambda name: Jobs(library, name))
        self._queues_lock = threading.Lock()   # two first requests for one backend must share one queue
        # a Ray pool loads models on its workers, which the page's setting does not reach
        self.memory_in_page = make_jobs is None
        self._memory: dict[str, str] = {}      # backend -> memory setting picked in the page
        self._loads_with: dict[str, str] = {}  # backend -> the setting its queue's loader uses (absent: default)

    def queue(self, backend: str | None = None):
        """The job queue of a backend: its jobs run one at a time, other backends' beside them. A memory setting
        picked in the page gets a fresh queue that loads with it, once no job of that backend is queued or
        running (those run with the model they have)."""
        from engine.backends.registry import configured
        name = backend or self.default
        with self._queues_lock:
            if name not in self.queues:
                if name not in configured():
                    raise InputError(f"backend: {name!r} is not set up here; available: {', '.join(configured())}")
                self.queues[name] = self._make_jobs(name) if name not in self._memory else self._reloaded(name)
            elif self.memory_pending(name) and not self.busy(name):
                self.queues[name] = self._reloaded(name)
            return self.queues[name]

    # ------------------------------------------------------------------ memory settings (issue 22)
    def memory(self, name: str) -> str:
        """The memory setting the backend's next job loads with: the page's pick, else the default."""
        return self._memory.get(name) or default_memory(name)

    def memory_pending(self, name: str) -> bool:
        """Whether a setting was picked that the backend's queue does not load with yet."""
        return name in self._memory and self._memory[name] != self._loads_with.get(name, default_memory(name))

    def busy(self, name: str) -> bool:
        return any(j["backend"] == name for j in self.library.jobs(("queued", "running"), limit=1_000_000))

    def set_memory(self, name: str, setting: str) -> str:
        """Pick a real model's memory setting -> what happens, in words: it loads with it for its next job, or
        once the jobs of that model queued or running are done."""
        from engine.backends import memory
        from engine.backends.registry import REAL
        if name not in REAL or not self.memory_in_page:
            raise InputError(f"Memory: the {name} model runs as it is; memory settings are for real models "
                             "loaded in this studio")
        self._memory[name] = str(memory.parse(setting, name, _device()))
        self.queue(name)   # reloads it now when that model is idle
        if self.memory_pending(name):
            return (f"{name} loads with memory {self._memory[name]} once none of its jobs is queued or running "
                    "(those keep the model they have)")
        return f"{name} loads with memory {self._memory[name]} for its next job"

    def _reloaded(self, name: str):
        """A new queue for `name` whose model loads with the picked setting; the old queue's model is let go
        (it would otherwise hold its weights, on the GPU, beside the new one's)."""
        setting, old = self._memory[name], self.queues.get(name)
        if old is not None:
            old.unload()   # the old queue is idle and gets no more jobs
        self._loads_with[name] = setting
        return Jobs(self.library, name, memory=setting)

    @property
    def jobs(self):
        return self.queue()

    def _owner(self, job_id: int):
        job = self.library.job(job_id)
        if job is None:
            raise InputError(f"job: {job_id} does not exist")
        return self.queue(job["backend"])

    def retry(self, job_id: int) -> int:
        return self._owner(job_id).retry(job_id)

    def cancel(self, job_id: int) -> bool:
        return self._owner(job_id).cancel(job_id)

    def wait(self, job_id: int, timeout: float | None = None) -> dict:
        return self._owner(job_id).wait(job_id, timeout)

    def resume(self):
        """Start the queue of every backend that jobs left queued by a restart wait for (or fail them, saying why)."""
        import time
        for job in self.library.jobs(("queued",), limit=1_000_000):
            if job["backend"] not in self.queues:
                try:
                    self.queue(job["backend"])  # its Jobs picks up its queued jobs
                except InputError as e:
                    self.library.update_job(job["id"], state="failed", error=str(e), finished=time.time())

    # ------------------------------------------------------------------ media
    def import_upload(self, path, field: str) -> str:
        """A file from the page -> 'upload:<name>' after checking it is a readable image or video."""
        from engine.video_io import probe
        if path is None:
            raise InputError(f"{field}: no file given")
        p = Path(path)
        if p.stat().st_size > self.max_upload_mb * 2**20:
            raise InputError(f"{field}: the file is larger than the {self.max_upload_mb} MB upload limit")
        probe(p, field=field)  # refuses anything that is not a readable image or video, by name
        return self.library.add_upload(p, p.name)

    def source(self, choice: str | None, upload, field: str) -> str:
        """The reference chosen in a source picker: an upload wins over the library dropdown."""
        if upload is not None:
            return self.import_upload(upload, field)
        if not choice:
            raise InputError(f"{field}: choose a video from the library or upload one")
        return choice

    def choices(self) -> list[tuple[str, str]]:
        return [(video_name(v)[:60], v["ref"]) for v in self.library.videos(limit=200)]

    # ------------------------------------------------------------------ jobs
    def submit(self, op: str, request: dict, backend: str | None = None) -> int:
        return self.queue(backend).submit(op, request)

    def result(self, job_id: int | None) -> tuple[list[dict], str]:
        """(the videos it made, a note) for a job the page is waiting on; ([], "") while it runs."""
        if not job_id:
            return [], ""
        job = self.library.job(job_id)
        if job is None or job["state"] in ("queued", "running"):
            return [], ""
        vids = self.library.videos_of_job(job_id)
        if job["state"] == "done" and vids:
            seeds = ", ".join(str(v["seed"]) for v in vids if v["seed"] is not None)
            return vids, f"Done: {self.job_name(job)}" + (f" (seed {seeds})" if seeds else "")
        return [], f"{self.job_name(job)}: {job['state']}" + (f": {job['error']}" if job["error"] else "")

    def job_name(self, job: dict) -> str:
        """A job as the page names it: by the numbers of the videos it made once done ("#12, #13"), else as
        "job 5": the page's one "#" numbering is the videos' (the Library's, the pickers', lineage's)."""
        vids = self.library.videos_of_job(job["id"]) if job["state"] == "done" else []
        refs = [job["request"].get(k) for k in SOURCES if isinstance(job["request"].get(k), str)]
        what = results_mod.label_of(job["op"], job["label"], {"from": refs})
        ids = ", ".join("#" + str(v["id"]) for v in vids)
        return f"{ids} {what}" if vids else f"job {job['id']} · {what}"

    # ------------------------------------------------------------------ storyboard
    def plan_rows(self, story: dict, backend: str | None = None) -> list[list]:
        """The plan on the picked model's latent grid, as table rows: per latent frame, its time, level, what is
        injected, what text it sees. Its outline needs the model's spec only, so picking a model loads nothing."""
        from engine.plan import outline
        from engine.requests import build
        tl, _, _ = build("storyboard", {"storyboard": story}, self.library.resolve)
        return outline(tl, self.queue(backend).spec).rows()

    def frames_note(self, backend: str | None, duration_s: float, fps: float) -> str:
        """What a duration becomes on the picked model: its frame rule, the frames made and the frames kept."""
        spec = self.queue(backend).spec
        n = max(1, round(float(duration_s) * float(fps)))
        made, tf = spec.snap_frames(n), spec.temporal_factor
        rule = f"{tf}n+1" if spec.causal_first else f"{tf}n"
        if made == n:
            return f"{n} frames at {float(fps):g} fps: a length this model makes exactly ({rule} frames)"
        return (f"{n} frames at {float(fps):g} fps: this model makes {rule} frames, so it makes {made} "
                f"and keeps the first {n}")

    def strip_value(self, story: dict, selected: int | None) -> dict:
        thumbs = {}
        for i, c in enumerate(story["cards"]):
            if c["kind"] in ("image", "video"):
                try:
                    thumbs[str(i)] = self.thumb(c["path"])
                except (InputError, OSError):
                    pass
        return {"duration_s": story["duration_s"], "cards": story["cards"], "selected": selected, "thumbs": thumbs}

    def thumb(self, ref: str) -> str:
        """A media reference's first frame as a small data: URI."""
        if ref.startswith("lib:"):
            item = self.library.video(int(ref[4:]))
            if item and item["thumb_path"] and not item["deleted"]:
                return data_uri(item["thumb_path"])
        from engine.video_io import read_video
        path = self.library.resolve("card", ref)
        if Path(path).suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"):
            return data_uri(path)
        return data_uri(read_video(path, end_s=0.01)[0])


@dataclass
class Page:
    """The components one tab hands to others: what every tab writes (the watched job, the note, the tabs), the
    model picked, and, filled in as tabs are built, each tab's seed field, source pickers and result panel."""
    studio: Studio
    demo: gr.Blocks
    watch: gr.BrowserState        # {"job": id, "tab": tab}: the job this page waits on
    note: gr.Markdown
    backend: gr.Dropdown
    tabs: gr.Tabs = None
    seeds: dict = field(default_factory=dict)      # tab -> its seed field
    pickers: dict = field(default_factory=dict)    # name -> a source dropdown listing the library's videos
    panels: list = field(default_factory=list)     # results.Panel, one per tab that makes videos


# ----------------------------------------------------------------------------- handlers
def gr_error(e: Exception, words: bool = False):
    """One line: the engine's InputError message (in words for the page), never a traceback."""
    line = str(e).splitlines()[0] if str(e) else e.__class__.__name__
    return gr.Error(ctl.in_words(line) if words else line, print_exception=False)


def guard(fn):
    """Run a handler; bad input becomes a message in the page and the page keeps working."""
    @functools.wraps(fn)
    def run(*a, **k):
        try:
            return fn(*a, **k)
        except InputError as e:
            raise gr_error(e, words=True) from None
    return run


def bind(fn, *first):
    """A top-level handler `fn(studio, ..., a, b)` as Gradio calls it, `(a, b)`: guarded, and with the signature of
    the arguments Gradio passes (Gradio reads it for event data)."""
    run = guard(functools.partial(fn, *first))
    functools.update_wrapper(run, fn)
    sig = inspect.signature(fn)
    run.__signature__ = sig.replace(parameters=list(sig.parameters.values())[len(first):])
    return run


def queued(studio: Studio, tab: str, op: str, req: dict, backend: str | None = None) -> tuple[dict, str]:
    """Queue a request -> (the value of `watch`, the note): the page now waits on that job for that tab."""
    job = studio.submit(op, req, backend)
    gr.Info(f"Queued (job {job})")
    return {"job": job, "tab": tab}, f"Job {job} queued…"


def seed_request(text) -> dict:
    """The seed field -> {"seed": n}, or {} when empty (the engine then draws a fresh seed for each job)."""
    text = str(text if text is not None else "").strip()
    if not text:
        return {}
    if not text.isdigit():
        raise InputError(f"seed: {text[:20]!r} is not a seed; leave it empty for a new one each time, "
                         f"or give a whole number from 0 to {PARAMS['seed'].max}")
    return {"seed": PARAMS["seed"].check(int(text))}


def sampling(steps, guidance, seed) -> dict:
    """The Advanced fields of a tab -> the request's sampling fields, each checked in words."""
    return {"steps": int(ctl.STEPS.check(steps)), "guidance": ctl.GUIDANCE.check(guidance), **seed_request(seed)}


# ----------------------------------------------------------------------------- controls every tab uses
def sampling_controls(prefix: str):
    """Steps, guidance and seed in a closed "Advanced" section: `#<prefix>-steps`, `-guidance`, `-seed`, and a note
    (`-sampling-note`) that says a typed value out of range as it is typed."""
    with gr.Accordion("Advanced", open=False, elem_id=f"{prefix}-advanced"):
        with gr.Row():
            steps = ctl.STEPS.number(elem_id=f"{prefix}-steps")
            guidance = ctl.GUIDANCE.number(elem_id=f"{prefix}-guidance")
        # a text box: an empty one means "a new seed each time" (a Number shows 0 when empty)
        seed = gr.Textbox("", label="Seed", placeholder="a new one each time", max_lines=1,
                          info="empty: a new seed each time; a number makes the same video again",
                          elem_id=f"{prefix}-seed")
        ctl.said_as_typed(gr.Markdown("", elem_id=f"{prefix}-sampling-note"), [(steps, ctl.STEPS),
                                                                             (guidance, ctl.GUIDANCE)])
    return steps, guidance, seed


def source_picker(page: Page, label: str, prefix: str):
    """A library dropdown and an upload box (an upload wins); the dropdown follows the library (page.pickers)."""
    with gr.Group():
        dd = gr.Dropdown(choices=page.studio.choices(), value=None, label=f"{label} from the library",
                         elem_id=f"{prefix}-source", allow_custom_value=False)
        up = gr.File(label=f"…or upload {label.lower()}", file_types=MEDIA_TYPES, type="filepath",
                     elem_id=f"{prefix}-upload", height=120)
    page.pickers[prefix] = dd
    return dd, up


# ----------------------------------------------------------------------------- names
def video_name(v: dict) -> str:
    """A library video as the page names it everywhere: "#12 remix: a blue box"."""
    return f"#{v['id']} {results_mod.label_of(v['kind'], v['label'], v['lineage'])}"


def video_info(lib, v: dict) -> str:
    """What the Library says of a video: kind, size, seed, sampling, the operation's own settings (remix amount,
    blend curve, loop bridge: from the request that made it) and lineage, a deleted source said so."""
    from engine.requests import OPS
    s = v["settings"]
    job = lib.job(v["job_id"]) if v["job_id"] is not None else None
    req = job["request"] if job else {}
    own = [f"{k.replace('_s', '').replace('_', ' ')} {json.dumps(req[k])}" for k in sorted(OPS[job["op"]].fields if job and job["op"] in OPS
           else ()) if k in req and k not in (*SOURCES, "storyboard") and "prompt" not in k]

    def source(ref) -> str:
        """A parent by its number; a deleted one said so, with the prompt and seed its record keeps."""
        if not str(ref).startswith("lib:"):
            return results_mod.ref_name(ref)
        p = lib.video(int(str(ref)[4:]))
        if p is None or not p["deleted"]:
            return results_mod.ref_name(ref) + (" (deleted)" if p is None else "")
        was = results_mod.label_of(p["kind"], p["label"], p["lineage"])
        return f"{results_mod.ref_name(ref)} (deleted: {was[:60]}, seed {p['seed']})"
    lineage = "; ".join(f"{k.replace('_', ' ')} {', '.join(source(r) for r in refs)}" for k, refs in v["lineage"].items())
    title = html.escape(video_name(v)) + (" (deleted)" if v.get("deleted") else "")
    return (f"**{title}**  \n{v['kind']} · {v['width']}x{v['height']} · "
            f"{v['duration_s']:.2f} s at {v['fps']:g} fps · seed {v['seed']} · backend {v['backend']}  \n"
            f"steps {s.get('steps')} · guidance {s.get('guidance')}" + "".join(f" · {html.escape(o)}" for o in own)
            + (f"  \nlineage: {html.escape(lineage)}" if lineage else "") + ("  \n★ favourite" if v["favourite"] else ""))
