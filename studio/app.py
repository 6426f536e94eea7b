"""The studio page: Create, Storyboard, Remix, Blend, Loop, Re-cut and Library, on Gradio Blocks.

Every button builds a request object (engine/requests.py) and queues it as a job
(studio/jobs.py); the page polls the library for progress. Media are named by reference
(`lib:<id>`, `upload:<name>`) and resolved by the library, never taken as paths from a
request. The same requests are served as API endpoints: /generate, /storyboard, /remix,
/blend, /loop, /extend, /recut (JSON request + optional uploaded files -> JSON + video).
"""
from __future__ import annotations

import base64
import html
import io
import json
import threading
from pathlib import Path

import gradio as gr

from engine.params import PARAMS, InputError
from studio import widgets
from studio.pages import controls as ctl
from studio.pages import jobs_list
from studio.pages import results as results_mod
from studio.pages import storyboard as sb_mod

ASPECTS = ["16:9", "1:1", "9:16"]
RESOLUTIONS = [64, 96, 128, 192, 256, 384, 512, 720]
# Short sides each backend was made for (the engine snaps any size to what the model accepts).
BACKEND_RESOLUTIONS = {"toy": [64, 96, 128], "reference": [32, 64, 128], "ltx": [256, 384, 512, 704],
                       "wan": [480, 720]}
BACKEND_FPS = {"toy": 8, "reference": 8, "ltx": 24, "wan": 16}   # the frame rates the models were trained at
REMIX_AMOUNTS = {"Subtle": 0.25, "Mild": 0.5, "Strong": 0.8}
API_OPS = ("generate", "storyboard", "remix", "blend", "loop", "extend", "recut")
MEDIA_TYPES = [".mp4", ".mov", ".webm", ".mkv", ".gif", ".png", ".jpg", ".jpeg", ".webp"]
CSS = """
.cp-jobs {display: flex; flex-direction: column; gap: 6px}
.cp-job {display: flex; gap: 10px; align-items: center; padding: 6px 8px; border-radius: 8px;
         border: 1px solid var(--border-color-primary); background: var(--block-background-fill)}
.cp-job img {width: 72px; height: 40px; object-fit: cover; border-radius: 4px; background: #222}
.cp-job .cp-body {flex: 1; min-width: 0}
.cp-job .cp-label {white-space: nowrap; overflow: hidden; text-overflow: ellipsis; font-size: 0.9em}
.cp-bar {height: 6px; border-radius: 3px; background: var(--neutral-200); overflow: hidden; margin-top: 4px}
.cp-bar > div {height: 100%; background: var(--color-accent)}
.cp-state {font-size: 0.8em; opacity: 0.75}
.cp-job {cursor: pointer}
.cp-cancel {font-size: 0.8em; padding: 2px 10px; border-radius: 6px; border: 1px solid var(--border-color-primary);
            background: var(--button-secondary-background-fill); cursor: pointer}
"""


def _slider(name: str, label: str, lo=None, hi=None, **kw) -> gr.Slider:
    """A slider whose range and step are the declared parameter's (optionally narrowed for the page)."""
    p = PARAMS[name]
    return gr.Slider(minimum=max(p.min, lo) if lo is not None else p.min, maximum=min(p.max, hi) if hi is not None else p.max,
                     step=p.step, value=kw.pop("value", p.default), label=label, info=p.help, **kw)


def _data_uri(path, size: int = 160) -> str:
    """A small JPEG of an image file as a data: URI (nothing served from disk)."""
    from PIL import Image
    with Image.open(path) as im:
        im = im.convert("RGB")
        im.thumbnail((size, size))
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


class Studio:
    """What the page's handlers share: the library and one job queue per backend (made on first use)."""

    def __init__(self, library, jobs, max_upload_mb: int = 200, make_jobs=None):
        from studio.jobs import Jobs
        self.library, self.max_upload_mb = library, max_upload_mb
        self.default = jobs.backend_name
        self.queues = {jobs.backend_name: jobs}
        self._make_jobs = make_jobs or (lambda name: Jobs(library, name))
        self._queues_lock = threading.Lock()   # two first requests for one backend must share one queue

    def queue(self, backend: str | None = None):
        """The job queue of a backend: its jobs run one at a time, other backends' beside them."""
        from engine.backends.registry import configured
        name = backend or self.default
        with self._queues_lock:
            if name not in self.queues:
                if name not in configured():
                    raise InputError(f"backend: {name!r} is not set up here; available: {', '.join(configured())}")
                self.queues[name] = self._make_jobs(name)
            return self.queues[name]

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
        refs = [job["request"].get(k) for k in ("image", "video", "a", "b") if isinstance(job["request"].get(k), str)]
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
                    thumbs[str(i)] = self._thumb(c["path"])
                except (InputError, OSError):
                    pass
        return {"duration_s": story["duration_s"], "cards": story["cards"], "selected": selected, "thumbs": thumbs}

    def _thumb(self, ref: str) -> str:
        if ref.startswith("lib:"):
            item = self.library.video(int(ref[4:]))
            if item and item["thumb_path"]:
                return _data_uri(item["thumb_path"])
        from engine.video_io import read_video
        from PIL import Image
        path = self.library.resolve("card", ref)
        frame = read_video(path, end_s=0.01)[0] if Path(path).suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp") \
            else None
        if frame is None:
            return _data_uri(path)
        buf = io.BytesIO()
        Image.fromarray(frame).save(buf, format="PNG")
        buf.seek(0)
        return _data_uri(buf)



def make_again(studio: Studio, vid) -> tuple[int, dict]:
    """Queue the request that made library video `vid` with that video's own seed (one variation) -> (job, video)."""
    v = studio.library.video(int(vid)) if vid not in (None, "") else None
    job = studio.library.job(v["job_id"]) if v and v["job_id"] is not None else None
    if job is None:
        raise InputError("video: select a video made in the studio first")
    gone = [r for refs in v["lineage"].values() for r in refs
            if str(r).startswith("lib:") and studio.library.video(int(str(r)[4:])) is None]
    if gone:
        raise InputError(f"#{v['id']} was made from {results_mod.ref_name(gone[0])}, which was deleted: without its "
                         "source video it cannot be made again")
    req = job["request"] if v["seed"] is None else dict(job["request"], seed=v["seed"], variations=1)
    return studio.submit(job["op"], req, job["backend"]), v


def delete_question(lib, vid) -> str:
    """What deleting a video means, asked before it happens: the videos made from it are named."""
    v = lib.video(int(vid)) if vid not in (None, "") else None
    if v is None:
        raise InputError("video: select a video first")
    children = [c for c in lib.videos(limit=100_000) if v["ref"] in [r for refs in c["lineage"].values() for r in refs]]
    made = (f" {', '.join(video_name(c) for c in children[:5])} {'was' if len(children) == 1 else 'were'} made from "
            "it and will say it was deleted." if children else "")
    return f"Delete **{html.escape(video_name(v))}** for good?{html.escape(made)}"


def seed_request(text) -> dict:
    """The seed field -> {"seed": n}, or {} when empty (the engine then draws a fresh seed for each job)."""
    text = str(text if text is not None else "").strip()
    if not text:
        return {}
    if not text.isdigit():
        raise InputError(f"seed: {text[:20]!r} is not a seed; leave it empty for a new one each time, "
                         f"or give a whole number from 0 to {PARAMS['seed'].max}")
    return {"seed": PARAMS["seed"].check(int(text))}


def video_name(v: dict) -> str:
    """A library video as the page names it everywhere: "#12 remix: a blue box"."""
    return f"#{v['id']} {results_mod.label_of(v['kind'], v['label'], v['lineage'])}"


def video_info(lib, v: dict) -> str:
    """What the Library says of a video: kind, size, seed, sampling, the operation's own settings (remix amount,
    blend curve, loop bridge: from the request that made it) and lineage, a deleted source said so."""
    from engine.requests import FIELDS
    s = v["settings"]
    job = lib.job(v["job_id"]) if v["job_id"] is not None else None
    req = job["request"] if job else {}
    own = [f"{k.replace('_s', '').replace('_', ' ')} {json.dumps(req[k])}" for k in sorted(FIELDS.get(job["op"], ()) if job
           else ()) if k in req and k not in ("image", "video", "a", "b", "storyboard") and "prompt" not in k]

    def source(ref) -> str:
        gone = str(ref).startswith("lib:") and lib.video(int(str(ref)[4:])) is None
        return results_mod.ref_name(ref) + (" (deleted)" if gone else "")
    lineage = "; ".join(f"{k.replace('_', ' ')} {', '.join(source(r) for r in refs)}" for k, refs in v["lineage"].items())
    return (f"**{html.escape(video_name(v))}**  \n{v['kind']} · {v['width']}x{v['height']} · "
            f"{v['duration_s']:.2f} s at {v['fps']:g} fps · seed {v['seed']} · backend {v['backend']}  \n"
            f"steps {s.get('steps')} · guidance {s.get('guidance')}" + "".join(f" · {html.escape(o)}" for o in own)
            + (f"  \nlineage: {html.escape(lineage)}" if lineage else "") + ("  \n★ favourite" if v["favourite"] else ""))


def _card_rows(story: dict) -> list[list]:
    out = []
    for i, c in enumerate(story["cards"]):
        when = f"{c['at_s']:g} s" if c["kind"] == "image" else f"{c['start_s']:g}–{c['end_s']:g} s"
        what = c.get("text") or c.get("path", "")
        out.append([i, c["kind"], when, what, c.get("strength", "")])
    return out


def _job_choices(jobs: list[dict]) -> list[tuple[str, int]]:
    return [(f"job {j['id']} {j['state']}: {results_mod.label_of(j['op'], j['label'])[:40]}", j["id"]) for j in jobs]


def _gr_error(e: Exception, words: bool = False):
    """One line: the engine's InputError message (in words for the page), never a traceback."""
    line = str(e).splitlines()[0] if str(e) else e.__class__.__name__
    return gr.Error(ctl.in_words(line) if words else line, print_exception=False)


def _guard(fn):
    """Run a handler; bad input becomes a message in the page and the page keeps working."""
    import functools

    @functools.wraps(fn)
    def run(*a, **k):
        try:
            return fn(*a, **k)
        except InputError as e:
            raise _gr_error(e, words=True) from None
    return run


def build(studio: Studio) -> gr.Blocks:
    from engine import presets
    lib, preset_names = studio.library, ["(none)", *presets.available()]

    def sampling_controls(prefix: str):
        with gr.Accordion("Advanced", open=False, elem_id=f"{prefix}-advanced"):
            steps = _slider("steps", "Steps", hi=100, elem_id=f"{prefix}-steps")
            guidance = _slider("guidance", "Guidance", elem_id=f"{prefix}-guidance")
            # a text box: an empty one means "a new seed each time" (a Number shows 0 when empty)
            seed = gr.Textbox("", label="Seed", placeholder="a new one each time", max_lines=1,
                              info="empty: a new seed each time; a number makes the same video again",
                              elem_id=f"{prefix}-seed")
        return steps, guidance, seed

    def source_picker(label: str, prefix: str):
        with gr.Group():
            dd = gr.Dropdown(choices=studio.choices(), value=None, label=f"{label} from the library",
                             elem_id=f"{prefix}-source", allow_custom_value=False)
            up = gr.File(label=f"…or upload {label.lower()}", file_types=MEDIA_TYPES, type="filepath",
                         elem_id=f"{prefix}-upload", height=120)
        return dd, up

    with gr.Blocks(title="cinepatch studio") as demo:
        # kept in the browser, so a reload keeps them: the job this page waits on, the job each tab shows, the prompt
        watch = gr.BrowserState(None, storage_key="cinepatch-watch")
        shown = gr.BrowserState({}, storage_key="cinepatch-shown")
        draft = gr.BrowserState("", storage_key="cinepatch-prompt")
        done_note = gr.Textbox(visible=False)
        story = gr.State({"duration_s": 4.0, "fps": 8.0, "aspect": "16:9", "resolution": 64, "cards": []})
        from engine.backends.registry import configured
        with gr.Row():
            gr.Markdown("## cinepatch studio")
            backend_dd = gr.Dropdown(configured(), value=studio.default, label="Model", elem_id="backend",
                                     info="the embedded model; LTX-Video / Wan when their folder is set", scale=0,
                                     min_width=220)
        with gr.Row():
            jobs_html = gr.HTML(jobs_list.render(studio), elem_id="jobs", js_on_load=jobs_list.JS)
        note = gr.Markdown("", elem_id="note")
        with gr.Tabs(elem_id="tabs") as tabs:
            # ---------------------------------------------------------- Create
            with gr.Tab("Create", id="create"):
                with gr.Row():
                    with gr.Column(scale=3):
                        prompt = gr.Textbox(label="Prompt", lines=2, elem_id="create-prompt",
                                            placeholder="a small red circle moving left on a black background")
                        media = gr.File(label="Image or video (optional)", file_types=MEDIA_TYPES, type="filepath",
                                        elem_id="create-media", height=120)
                        with gr.Row():
                            aspect = gr.Radio(ASPECTS, value="16:9", label="Aspect")
                            sizes = BACKEND_RESOLUTIONS.get(studio.default, RESOLUTIONS)
                            resolution = gr.Dropdown(sizes, value=sizes[0], label="Resolution (short side, px)",
                                                     elem_id="create-resolution")
                            duration = ctl.DURATION.number(2.0, elem_id="create-duration")
                        with gr.Row():
                            variations = gr.Radio([1, 2, 4], value=1, label="Variations", elem_id="create-variations")
                            preset = gr.Dropdown(preset_names, value="(none)", label="Preset")
                            fps = ctl.FPS.number(BACKEND_FPS.get(studio.default, 8), elem_id="create-fps")
                        frames_md = gr.Markdown(studio.frames_note(None, 2.0, BACKEND_FPS.get(studio.default, 8)),
                                                elem_id="create-frames")
                        steps, guidance, seed = sampling_controls("create")
                        go = gr.Button("Generate", variant="primary", elem_id="create-generate")
                    with gr.Column(scale=2):
                        create_panel = results_mod.panel("create", "create", results_mod.MAX_SHOWN, loop=True)

            # ---------------------------------------------------------- Storyboard
            with gr.Tab("Storyboard", id="storyboard"):
                strip = widgets.timeline_strip(studio.strip_value(story.value, None))
                with gr.Row():
                    with gr.Column(scale=2):
                        with gr.Row():
                            sb_duration = ctl.STORY_LENGTH.number(4.0, elem_id="sb-duration")
                            sb_aspect = gr.Radio(ASPECTS, value="16:9", label="Aspect")
                        card_kind = gr.Radio(["text", "image", "video"], value="text", label="Card", elem_id="card-kind")
                        card_text = gr.Textbox(label="Text", elem_id="card-text")
                        with gr.Row():
                            card_start = ctl.CARD_START.number(0.0, "Start (s)", elem_id="card-start")
                            card_end = ctl.CARD_END.number(2.0, "End (s)", elem_id="card-end")
                            card_at = ctl.CARD_AT.number(0.0, "Moment (image, s)", elem_id="card-at")
                        card_strength = _slider("strength", "Strength")
                        card_src, card_up = source_picker("Media", "card")
                        with gr.Row():
                            add_card = gr.Button("Add card", elem_id="card-add")
                            upd_card = gr.Button("Update selected", elem_id="card-update")
                            del_card = gr.Button("Delete selected", elem_id="card-delete")
                        selected = gr.Number(value=None, precision=0, label="Selected card", interactive=False,
                                             elem_id="card-selected")
                    with gr.Column(scale=3):
                        cards_df = gr.Dataframe(headers=["#", "kind", "when", "what", "strength"], value=[],
                                                label="Cards", interactive=False, elem_id="cards-table")
                        plan_df = gr.Dataframe(headers=["latent frame", "pixel frames", "time (s)", "noise level",
                                                        "injected", "text it sees"], value=[],
                                               label="Compiled plan", interactive=False, elem_id="plan-table")
                        with gr.Row():
                            sb_save = gr.DownloadButton("Save .json", elem_id="sb-save")
                            sb_load = gr.UploadButton("Load .json", file_types=[".json"], elem_id="sb-load")
                        sb_steps, sb_guidance, sb_seed = sampling_controls("sb")
                        sb_go = gr.Button("Generate storyboard", variant="primary", elem_id="sb-generate")
                        sb_panel = results_mod.panel("storyboard", "sb")

            # ---------------------------------------------------------- Remix
            with gr.Tab("Remix", id="remix"):
                with gr.Row():
                    with gr.Column():
                        rx_src, rx_up = source_picker("Video", "remix")
                        rx_prompt = gr.Textbox(label="New prompt", elem_id="remix-prompt")
                        rx_level = gr.Radio([*REMIX_AMOUNTS, "Custom"], value="Mild", label="Amount",
                                            elem_id="remix-level")
                        rx_amount = _slider("amount", "Custom amount", visible=False)
                        rx_steps, rx_guidance, rx_seed = sampling_controls("remix")
                        rx_go = gr.Button("Remix", variant="primary", elem_id="remix-go")
                    with gr.Column():
                        rx_panel = results_mod.panel("remix", "remix")

            # ---------------------------------------------------------- Blend
            with gr.Tab("Blend", id="blend"):
                with gr.Row():
                    with gr.Column():
                        bl_a, bl_a_up = source_picker("Video A", "blend-a")
                        bl_b, bl_b_up = source_picker("Video B", "blend-b")
                        with gr.Row():
                            bl_pa = gr.Textbox(label="Prompt A (optional)")
                            bl_pb = gr.Textbox(label="Prompt B (optional)")
                    with gr.Column():
                        curve = widgets.curve_editor(widgets.CURVE_PRESETS["transition"])
                        with gr.Row():
                            preset_btns = {k: gr.Button(k.capitalize(), size="sm", elem_id=f"curve-{k}")
                                           for k in widgets.CURVE_PRESETS}
                            edit_mode = gr.Radio(["mix", "repaint"], value="mix", label="Edit curve")
                            auto_repaint = gr.Button("Automatic repaint", size="sm")
                        curve_note = gr.HTML(widgets.curve_preview_html(widgets.CURVE_PRESETS["transition"]))
                        curve_numbers = gr.Markdown(_curve_text(widgets.CURVE_PRESETS["transition"]),
                                                    elem_id="curve-numbers")
                        bl_steps, bl_guidance, bl_seed = sampling_controls("blend")
                        bl_go = gr.Button("Blend", variant="primary", elem_id="blend-go")
                bl_panel = results_mod.panel("blend", "blend")

            # ---------------------------------------------------------- Loop
            with gr.Tab("Loop", id="loop"):
                with gr.Row():
                    with gr.Column():
                        lp_src, lp_up = source_picker("Video", "loop")
                        lp_bridge = ctl.BRIDGE.number(elem_id="loop-bridge")
                        lp_context = ctl.CONTEXT.number(elem_id="loop-context")
                        lp_prompt = gr.Textbox(label="Prompt (optional)")
                        lp_steps, lp_guidance, lp_seed = sampling_controls("loop")
                        lp_go = gr.Button("Make loop", variant="primary", elem_id="loop-go")
                    with gr.Column():
                        lp_panel = results_mod.panel("loop", "loop", label="Loop (plays on repeat)", loop=True)

            # ---------------------------------------------------------- Re-cut
            with gr.Tab("Re-cut", id="recut"):
                with gr.Row():
                    with gr.Column():
                        rc_src, rc_up = source_picker("Video", "recut")
                        rc_action = gr.Radio(["Trim / fps", "Extend forward", "Extend backward", "Upscale"],
                                             value="Trim / fps", label="What to do", elem_id="recut-action")
                        with gr.Row():
                            rc_start = ctl.TRIM_START.number(0.0, elem_id="recut-start")
                            rc_end = ctl.TRIM_END.number(0.0, "Trim end (s, 0 = to the end)", elem_id="recut-end")
                        rc_fps = gr.Dropdown(["keep", 6, 8, 12, 24, 30], value="keep", label="fps")
                        rc_seconds = ctl.EXTEND.number(elem_id="recut-seconds")
                        rc_res = gr.Dropdown(BACKEND_RESOLUTIONS.get(studio.default, RESOLUTIONS),
                                             value=BACKEND_RESOLUTIONS.get(studio.default, RESOLUTIONS)[-1],
                                             label="Upscale to (short side, px)")
                        rc_prompt = gr.Textbox(label="Prompt (extend / upscale, optional)")
                        rc_steps, rc_guidance, rc_seed = sampling_controls("recut")
                        rc_go = gr.Button("Apply", variant="primary", elem_id="recut-go")
                    with gr.Column():
                        rc_panel = results_mod.panel("recut", "recut")

            # ---------------------------------------------------------- Library
            with gr.Tab("Library", id="library"):
                with gr.Row():
                    lib_fav_only = gr.Checkbox(label="Favourites only", elem_id="lib-fav-only")
                    lib_kind = gr.Dropdown(["all", "generate", "storyboard", "remix", "blend", "loop", "extend",
                                            "recut"], value="all", label="Kind")
                    lib_refresh = gr.Button("Refresh", size="sm", elem_id="lib-refresh")
                gallery = gr.Gallery(label="Videos", columns=6, height=260, allow_preview=False, elem_id="lib-gallery")
                lib_ids = gr.State([])
                with gr.Row():
                    with gr.Column(scale=2):
                        lib_video = gr.Video(label="Selected", autoplay=True, interactive=False, elem_id="lib-video")
                    with gr.Column(scale=2):
                        lib_info = gr.Markdown("Select a video.", elem_id="lib-info")
                        lib_sel = gr.Number(value=None, precision=0, visible=False)
                        with gr.Row():
                            fav = gr.Button("★ Favourite", size="sm", elem_id="lib-fav")
                            delete = gr.Button("Delete", size="sm", variant="stop", elem_id="lib-delete")
                            dl_mp4 = gr.DownloadButton("Download mp4", size="sm", elem_id="lib-mp4")
                            mk_gif = gr.Button("Make GIF", size="sm", elem_id="lib-gif")
                            again = gr.Button("Make again", size="sm", elem_id="lib-again")
                            lib_reuse = gr.Button("Reuse seed", size="sm", elem_id="lib-reuse-seed")
                        with gr.Row(visible=False, elem_id="lib-confirm") as confirm_row:  # deleting asks first
                            confirm_md = gr.Markdown("", elem_id="lib-confirm-text")
                            delete_yes = gr.Button("Delete", size="sm", variant="stop", elem_id="lib-delete-yes")
                            delete_no = gr.Button("Keep it", size="sm", elem_id="lib-delete-no")
                        gif_file = gr.File(label="GIF", visible=False, interactive=False)
                        with gr.Row():
                            open_btns = {k: gr.Button(f"Open in {k.capitalize()}", size="sm", elem_id=f"lib-open-{k}")
                                         for k in ("storyboard", "remix", "blend", "loop", "recut")}
                with gr.Row():
                    retry_job = gr.Dropdown([], label="Interrupted or failed jobs", elem_id="lib-retry-job")
                    retry = gr.Button("Retry", size="sm", elem_id="lib-retry")
                    active_job = gr.Dropdown([], label="Queued or running jobs", elem_id="lib-active-job",
                                             allow_custom_value=True)  # the list lags the queue: checked on cancel
                    cancel = gr.Button("Cancel job", size="sm", elem_id="lib-cancel")

        timer = gr.Timer(0.7)
        panels = [create_panel, sb_panel, rx_panel, bl_panel, lp_panel, rc_panel]
        seeds = {"create": seed, "storyboard": sb_seed, "remix": rx_seed, "blend": bl_seed, "loop": lp_seed,
                 "recut": rc_seed}
        for p in panels:
            for slot in p.slots:
                slot.reuse.click(_guard(results_mod.seed_of), slot.reuse, seeds[p.tab])

        # ---------------------------------------------------------- polling: jobs, results, notifications
        reported = gr.State(None)   # the watched job whose end this page has shown (the poll writes it; opening a job resets it)

        def tick(w, shown_, reported_):
            """The job list, and the watched job's end once: its results in its tab, a note and a toast. The poll
            never writes `watch`: one that started before a click queued a job would put the old value back."""
            outs = [jobs_list.render(studio)]
            w = w if isinstance(w, dict) and isinstance(w.get("job"), int) else None
            vids, msg = studio.result(w["job"]) if w and w["job"] != reported_ else ([], "")
            for p in panels:
                n = len(p.slots)
                outs += results_mod.panel_updates(vids, n) if msg and p.tab == w["tab"] else results_mod.unchanged(n)
            if not msg:
                return outs + [gr.update()] * 4
            shown_ = dict(shown_ or {}, **{w["tab"]: w["job"]}) if vids else shown_
            return outs + [msg, f"{w['job']}|{'ok' if vids else 'bad'}|{msg}", shown_, w["job"]]
        timer.tick(tick, [watch, shown, reported], [jobs_html, *[o for p in panels for o in p.outputs], note, done_note,
                                                    shown, reported], show_progress="hidden", queue=False)
        done_note.change(results_mod.notify, done_note, None, show_progress="hidden")
        demo.load(lambda sh, d: [*results_mod.restored(studio, sh, panels), d or gr.update()], [shown, draft],
                  [*[o for p in panels for o in p.outputs], prompt])
        prompt.change(lambda t: t, prompt, draft, show_progress="hidden", queue=False)

        def queued(tab: str, op: str, req: dict, backend_: str | None = None):
            job = studio.submit(op, req, backend_)
            gr.Info(f"Queued (job {job})")
            return {"job": job, "tab": tab}, f"Job {job} queued…"

        def sampling(steps_, guidance_, seed_) -> dict:
            return {"steps": int(steps_), "guidance": float(guidance_), **seed_request(seed_)}

        # ---------------------------------------------------------- Create
        @_guard
        def on_generate(prompt_, media_, aspect_, res_, dur_, var_, preset_, fps_, steps_, guidance_, seed_,
                        backend_):
            req = {"prompt": prompt_ or "", "aspect": aspect_, "resolution": int(res_),
                   "duration_s": ctl.DURATION.check(dur_), "variations": int(var_), "fps": ctl.FPS.check(fps_),
                   **sampling(steps_, guidance_, seed_)}
            if preset_ and preset_ != "(none)":
                req["preset"] = preset_
            if media_ is not None:
                ref = studio.import_upload(media_, "media")
                from engine.video_io import probe
                req["video" if probe(studio.library.resolve("media", ref)).kind == "video" else "image"] = ref
            return queued("create", "generate", req, backend_)
        go.click(on_generate, [prompt, media, aspect, resolution, duration, variations, preset, fps, steps, guidance,
                               seed, backend_dd], [watch, note])

        def on_backend(name):
            """Sizes and frame rate follow the chosen model: the short sides and fps it was made for."""
            sizes = BACKEND_RESOLUTIONS.get(name, RESOLUTIONS)
            return (gr.update(choices=sizes, value=sizes[0]), gr.update(choices=sizes, value=sizes[-1]),
                    BACKEND_FPS.get(name, 8))
        backend_dd.change(on_backend, backend_dd, [resolution, rc_res, fps])

        def on_length(name, dur_, fps_):
            """The frames note follows what is typed; a value out of range is said here, as it is typed."""
            try:
                return studio.frames_note(name, ctl.DURATION.check(dur_), ctl.FPS.check(fps_))
            except InputError as e:
                return f"⚠ {ctl.in_words(e)}"
        for ev in (duration.input, duration.change, fps.input, fps.change):
            ev(on_length, [backend_dd, duration, fps], frames_md, show_progress="hidden")

        def on_media(media_):
            """Refuse a bad file as soon as it arrives: a message, and the upload box is cleared."""
            if media_ is not None:
                try:
                    studio.import_upload(media_, "media")
                except InputError as e:
                    gr.Warning(str(e).splitlines()[0])
                    return None
            return gr.update()
        media.upload(on_media, media, media)

        # ---------------------------------------------------------- Storyboard
        def refresh_story(s, sel, backend_=None):
            """(strip, cards table, plan table, note, Save's file) of a storyboard: one state, shown everywhere."""
            try:
                rows, msg = studio.plan_rows(s, backend_) if s["cards"] else [], ""
            except InputError as e:
                rows, msg = [], f"Plan: {ctl.in_words(e)}"
            return studio.strip_value(s, sel), _card_rows(s), rows, msg, story_file(s)

        def story_file(s):
            """The file Save .json offers, written with every change of the storyboard and sent in the same update:
            a download button sends the file it holds when clicked, so writing it on the click sent the state
            before the last change (finding 3)."""
            try:
                return str(sb_mod.export(lib, s))
            except InputError:  # a card's media deleted since: nothing to offer until it is replaced
                return None

        def card_from_controls(kind, text, start, end, at, strength, src, up):
            if kind == "text":
                if not (text or "").strip():
                    raise InputError("text: a text card needs some text")
                return {"kind": "text", "start_s": ctl.CARD_START.check(start), "end_s": ctl.CARD_END.check(end),
                        "text": text}
            ref = studio.source(src, up, "media")
            if kind == "image":
                return {"kind": "image", "at_s": ctl.CARD_AT.check(at), "path": ref, "strength": float(strength)}
            return {"kind": "video", "start_s": ctl.CARD_START.check(start), "end_s": ctl.CARD_END.check(end),
                    "path": ref, "strength": float(strength)}

        def checked(s):
            from engine.requests import build
            build("storyboard", {"storyboard": s}, studio.library.resolve)  # refuse a bad card now, by name
            return s

        @_guard
        def on_add(s, sel, dur, asp, *controls_and_backend):
            *controls_, backend_ = controls_and_backend
            s = sb_mod.fit_to_length(dict(s, aspect=asp), ctl.STORY_LENGTH.check(dur))[0]  # a length typed, not yet left
            s = checked(dict(s, cards=[*s["cards"], card_from_controls(*controls_)]))
            sel = len(s["cards"]) - 1
            return s, sel, *refresh_story(s, sel, backend_)

        @_guard
        def on_update(s, sel, dur, asp, *controls_and_backend):
            *controls_, backend_ = controls_and_backend
            if sel is None or not (0 <= int(sel) < len(s["cards"])):
                raise InputError("card: select a card in the timeline first")
            s = sb_mod.fit_to_length(dict(s, aspect=asp), ctl.STORY_LENGTH.check(dur))[0]
            cards = list(s["cards"])
            cards[int(sel)] = card_from_controls(*controls_)
            s = checked(dict(s, cards=cards))
            return s, sel, *refresh_story(s, sel, backend_)

        @_guard
        def on_delete(s, sel, dur, asp, backend_):
            if sel is None or not (0 <= int(sel) < len(s["cards"])):
                raise InputError("card: select a card in the timeline first")
            s = dict(s, cards=[c for i, c in enumerate(s["cards"]) if i != int(sel)])
            return s, None, *refresh_story(s, None, backend_)

        def on_settings(s, sel, dur, asp, backend_):
            """A new length fits the cards to it at once (trimmed, said in a note); a length that would leave a card
            outside, or one out of range, is refused and the field goes back to the storyboard's length."""
            try:
                s, notes = sb_mod.fit_to_length(s, ctl.STORY_LENGTH.check(dur))
            except InputError as e:
                gr.Warning(ctl.in_words(e))
                return s, sel, *refresh_story(s, sel, backend_), s["duration_s"]
            s = dict(s, aspect=asp)
            strip_, rows, plan_rows, msg, save = refresh_story(s, sel, backend_)
            return s, sel, strip_, rows, plan_rows, "; ".join(notes) or msg, save, s["duration_s"]

        controls = [card_kind, card_text, card_start, card_end, card_at, card_strength, card_src, card_up]
        sb_outs = [story, selected, strip, cards_df, plan_df, note, sb_save]
        sb_ins = [story, selected, sb_duration, sb_aspect]
        add_card.click(on_add, [*sb_ins, *controls, backend_dd], sb_outs)
        upd_card.click(on_update, [*sb_ins, *controls, backend_dd], sb_outs)
        del_card.click(on_delete, [*sb_ins, backend_dd], sb_outs)
        for ev in (sb_duration.submit, sb_duration.blur, sb_aspect.change, backend_dd.change):  # the plan follows the model
            ev(on_settings, [*sb_ins, backend_dd], [*sb_outs, sb_duration])

        @_guard
        def on_strip(v, s, backend_):
            """A click selects a card (its fields go to the controls); a drag moves it."""
            if not isinstance(v, dict):
                return (gr.update(),) * (len(sb_outs) + 6)
            sel = v.get("selected")
            cards = v.get("cards", s["cards"])
            if isinstance(cards, list) and len(cards) == len(s["cards"]):
                moved = [dict(old, **{k: float(new[k]) for k in ("start_s", "end_s", "at_s") if k in old and k in new})
                         for old, new in zip(s["cards"], cards)]
                try:
                    s = checked(dict(s, cards=moved))
                except InputError as e:
                    gr.Warning(ctl.in_words(e))
            c = s["cards"][sel] if isinstance(sel, int) and 0 <= sel < len(s["cards"]) else None
            fields = [gr.update()] * 6
            if c:
                fields = [c["kind"], c.get("text", ""), c.get("start_s", 0.0), c.get("end_s", 0.0), c.get("at_s", 0.0),
                          c.get("strength", 1.0)]
            return s, sel, *refresh_story(s, sel, backend_), *fields
        # the strip is sent back too: after a refused drag it shows the cards where they are, not where they were dropped
        strip.input(on_strip, [strip, story, backend_dd], [*sb_outs, *controls[:6]])

        demo.load(story_file, story, sb_save)

        @_guard
        def on_load(f, sel, backend_):
            from engine.timeline import read_json
            d = read_json(f)
            if not isinstance(d, dict):
                raise InputError("storyboard: expected a JSON object")
            d.pop("version", None)
            cards = d.get("cards") if isinstance(d.get("cards"), list) else []
            for i, c in enumerate(cards):  # files of this library come back as references; others are refused
                if isinstance(c, dict) and isinstance(c.get("path"), str) and not c["path"].startswith(("lib:", "upload:")):
                    ref = lib.ref_for_path(c["path"])
                    if ref is None:
                        raise InputError(f"cards[{i}].path: {c['path'][:80]!r} is not in the studio's library; "
                                         "upload it and add the card again")
                    cards[i] = dict(c, path=ref)
            s = checked({"duration_s": 4.0, "fps": 8.0, "aspect": "16:9", "resolution": 64, "cards": [], **d})
            return s, None, *refresh_story(s, None, backend_)
        sb_load.upload(on_load, [sb_load, selected, backend_dd], sb_outs)

        @_guard
        def on_sb_generate(s, steps_, guidance_, seed_, backend_):
            if not s["cards"]:
                raise InputError("cards: add at least one card to the storyboard")
            return queued("storyboard", "storyboard", {"storyboard": s, **sampling(steps_, guidance_, seed_)}, backend_)
        sb_go.click(on_sb_generate, [story, sb_steps, sb_guidance, sb_seed, backend_dd], [watch, note])

        # ---------------------------------------------------------- Remix
        rx_level.change(lambda lv: gr.update(visible=lv == "Custom"), rx_level, rx_amount)

        @_guard
        def on_remix(src, up, prompt_, level, amount, steps_, guidance_, seed_, backend_):
            amt = float(amount) if level == "Custom" else REMIX_AMOUNTS[level]
            return queued("remix", "remix", {"video": studio.source(src, up, "video"), "prompt": prompt_ or "",
                                             "amount": amt, **sampling(steps_, guidance_, seed_)}, backend_)
        rx_go.click(on_remix, [rx_src, rx_up, rx_prompt, rx_level, rx_amount, rx_steps, rx_guidance, rx_seed,
                               backend_dd],
                    [watch, note])

        # ---------------------------------------------------------- Blend
        def on_curve(v):
            try:
                v = widgets.normalize_curve(v)
            except InputError as e:
                return gr.update(), f"<span>{html.escape(str(e))}</span>"
            return _curve_text(v), widgets.curve_preview_html(v)
        curve.change(on_curve, curve, [curve_numbers, curve_note])
        for name, btn in preset_btns.items():
            btn.click(lambda n=name: dict(widgets.CURVE_PRESETS[n]), None, curve).then(
                on_curve, curve, [curve_numbers, curve_note])
        edit_mode.change(lambda v, m: dict(widgets.normalize_curve(v), edit=m), [curve, edit_mode], curve)
        auto_repaint.click(lambda v: dict(widgets.normalize_curve(v), repaint=None), curve, curve).then(
            on_curve, curve, [curve_numbers, curve_note])

        @_guard
        def on_blend(a, a_up, b, b_up, pa, pb, v, steps_, guidance_, seed_, backend_):
            req = {"a": studio.source(a, a_up, "a"), "b": studio.source(b, b_up, "b"), "prompt_a": pa or "",
                   "prompt_b": pb or "", **_curve_request(widgets.normalize_curve(v)),
                   **sampling(steps_, guidance_, seed_)}
            return queued("blend", "blend", req, backend_)
        bl_go.click(on_blend, [bl_a, bl_a_up, bl_b, bl_b_up, bl_pa, bl_pb, curve, bl_steps, bl_guidance, bl_seed,
                               backend_dd],
                    [watch, note])

        # ---------------------------------------------------------- Loop
        @_guard
        def on_loop(src, up, bridge, context, prompt_, steps_, guidance_, seed_, backend_):
            return queued("loop", "loop", {"video": studio.source(src, up, "video"), "bridge_s": ctl.BRIDGE.check(bridge),
                                           "context_s": ctl.CONTEXT.check(context), "prompt": prompt_ or "",
                                           **sampling(steps_, guidance_, seed_)}, backend_)
        lp_go.click(on_loop, [lp_src, lp_up, lp_bridge, lp_context, lp_prompt, lp_steps, lp_guidance, lp_seed,
                              backend_dd],
                    [watch, note])

        # ---------------------------------------------------------- Re-cut
        @_guard
        def on_recut(src, up, action, start, end, fps_, seconds, res, prompt_, steps_, guidance_, seed_, backend_):
            ref = studio.source(src, up, "video")
            if action == "Trim / fps":
                req, start, end = {"video": ref}, ctl.TRIM_START.check(start), ctl.TRIM_END.check(end)
                if end > 0 or start:
                    from engine.video_io import probe
                    stop = end if end > 0 else probe(studio.library.resolve("video", ref)).duration_s
                    req["trim"] = [start, stop]
                if fps_ not in (None, "keep"):
                    req["fps"] = float(fps_)
                return queued("recut", "recut", req, backend_)
            smp = sampling(steps_, guidance_, seed_)
            if action == "Upscale":
                return queued("recut", "recut", {"video": ref, "upscale": int(res), "prompt": prompt_ or "", **smp},
                              backend_)
            return queued("recut", "extend", {"video": ref, "extend_s": ctl.EXTEND.check(seconds), "prompt": prompt_ or "",
                                              "direction": "forward" if action == "Extend forward" else "backward",
                                              **smp}, backend_)
        rc_go.click(on_recut, [rc_src, rc_up, rc_action, rc_start, rc_end, rc_fps, rc_seconds, rc_res, rc_prompt,
                               rc_steps, rc_guidance, rc_seed, backend_dd], [watch, note])

        # ---------------------------------------------------------- Library
        pickers = [rx_src, bl_a, bl_b, lp_src, rc_src, card_src]
        # a finished job's videos are offered in every source picker at once (they waited for a tab switch)
        done_note.change(lambda: [gr.update(choices=studio.choices()) for _ in pickers], None, pickers,
                         show_progress="hidden")

        def library_view(fav_only, kind):
            items = lib.videos(favourites=bool(fav_only), kind=None if kind in (None, "all") else kind)
            pics = [(v["thumb_path"], f"{'★ ' if v['favourite'] else ''}{video_name(v)[:48]}")
                    for v in items if v["thumb_path"] and Path(v["thumb_path"]).exists()]
            ids = [v["id"] for v in items if v["thumb_path"] and Path(v["thumb_path"]).exists()]
            stuck, active = (_job_choices(lib.jobs(states, limit=20)) for states in
                             (("interrupted", "failed", "cancelled"), ("running", "queued")))
            ch = studio.choices()
            return (pics, ids, gr.update(choices=stuck, value=None), gr.update(choices=active, value=None),
                    *[gr.update(choices=ch) for _ in pickers])
        lib_outs = [gallery, lib_ids, retry_job, active_job, *pickers]
        for ev in (lib_refresh.click, lib_fav_only.change, lib_kind.change, demo.load):
            ev(library_view, [lib_fav_only, lib_kind], lib_outs)
        tabs.select(library_view, [lib_fav_only, lib_kind], lib_outs)

        def describe(vid):
            v = lib.video(vid) if vid is not None else None
            if v is None:
                return None, "Select a video.", None, None
            return v["path"], video_info(lib, v), v["id"], v["path"]

        def on_select(ids, evt: gr.SelectData):
            return describe(ids[evt.index]) if evt.index is not None and evt.index < len(ids) else describe(None)
        gallery.select(on_select, lib_ids, [lib_video, lib_info, lib_sel, dl_mp4])

        def on_fav(vid, fav_only, kind):
            if vid is not None:
                v = lib.video(vid)
                if v:
                    lib.set_favourite(vid, not v["favourite"])
            return (*describe(vid), *library_view(fav_only, kind))
        fav.click(on_fav, [lib_sel, lib_fav_only, lib_kind], [lib_video, lib_info, lib_sel, dl_mp4, *lib_outs])

        @_guard
        def on_ask_delete(vid):
            return gr.update(visible=True), delete_question(lib, vid)
        delete.click(on_ask_delete, lib_sel, [confirm_row, confirm_md])
        delete_no.click(lambda: gr.update(visible=False), None, confirm_row)

        def on_delete_video(vid, fav_only, kind):
            if vid is not None:
                lib.delete(vid)
                gr.Info(f"Deleted #{vid}")
            return (gr.update(visible=False), None, "Select a video.", None, None, *library_view(fav_only, kind))
        delete_yes.click(on_delete_video, [lib_sel, lib_fav_only, lib_kind],
                         [confirm_row, lib_video, lib_info, lib_sel, dl_mp4, *lib_outs])

        @_guard
        def on_gif(vid):
            if vid is None:
                raise InputError("video: select a video first")
            return gr.update(value=str(lib.gif(vid)), visible=True)
        mk_gif.click(on_gif, lib_sel, gif_file)

        @_guard
        def on_again(vid):
            """This video made again: its job's request with its own seed, so the same video comes back."""
            new, v = make_again(studio, vid)
            gr.Info(f"Queued (job {new}): #{v['id']} again, seed {v['seed']}")
            return {"job": new, "tab": results_mod.KIND_TAB.get(v["kind"], "create")}
        again.click(on_again, lib_sel, watch)

        @_guard
        def on_reuse(vid):
            """The seed of the selected video into the seed field of the tab that makes its kind."""
            v = lib.video(vid) if vid is not None else None
            if v is None or v["seed"] is None:
                raise InputError("seed: select a video made by the model first")
            tab = results_mod.KIND_TAB.get(v["kind"], "create")
            return (gr.Tabs(selected=tab), *[str(v["seed"]) if t == tab else gr.update() for t in seeds])
        lib_reuse.click(on_reuse, lib_sel, [tabs, *seeds.values()])

        @_guard
        def on_retry(job):
            if job is None:
                raise InputError("job: choose an interrupted or failed job")
            new = studio.retry(int(job))
            gr.Info(f"Queued (job {new}): job {job} again")
            return {"job": new, "tab": "create"}
        retry.click(on_retry, retry_job, watch)

        @_guard
        def on_cancel(chosen, w):
            """The job chosen in the list, else the one this page waits on: never someone else's newest."""
            job = chosen if chosen not in (None, "") else (w or {}).get("job")
            if not str(job).isdigit():
                raise InputError("job: choose a queued or running job to cancel")
            if not studio.cancel(int(job)):
                raise InputError(f"job: job {int(job)} has already ended")
            gr.Info(f"Cancelling job {int(job)}")
        cancel.click(on_cancel, [active_job, watch], None)

        @_guard
        def on_job_click(evt: gr.EventData):
            """A job's own Cancel in the list, or a click on the job: its result, in its tab."""
            d = getattr(evt, "_data", None) or {}
            w, said = jobs_list.act(studio, d.get("job"), d.get("action"))
            if said:
                gr.Info(said)
            return (gr.update(),) * 3 if w is None else (w, gr.Tabs(selected=w["tab"]), None)  # None: show it again
        jobs_html.click(on_job_click, None, [watch, tabs, reported])

        def opener(tab):
            def open_in(vid, s, backend_):
                if vid is None:
                    raise gr.Error("Select a video first", print_exception=False)
                ref = f"lib:{int(vid)}"
                ups = {p: gr.update() for p in pickers}
                target = {"remix": rx_src, "blend": bl_a, "loop": lp_src, "recut": rc_src}.get(tab)
                if target is not None:
                    ups[target] = gr.update(choices=studio.choices(), value=ref)
                if tab == "storyboard":
                    v = lib.video(int(vid))
                    s = dict(s, cards=[*s["cards"], {"kind": "video", "start_s": 0.0,
                                                      "end_s": min(float(v["duration_s"]), float(s["duration_s"])),
                                                      "path": ref, "strength": 1.0}])
                    return (gr.Tabs(selected=tab), *ups.values(), s, *refresh_story(s, None, backend_))
                return (gr.Tabs(selected=tab), *ups.values(), s, *[gr.update()] * 5)
            return open_in
        open_outs = [tabs, *pickers, story, strip, cards_df, plan_df, note, sb_save]
        for tab, btn in open_btns.items():
            btn.click(opener(tab), [lib_sel, story, backend_dd], open_outs)

        # ---------------------------------------------------------- each result's own actions
        def on_slot_open(choice, vid, s, backend_):
            if choice not in results_mod.OPEN_IN:
                return (gr.update(),) * len(open_outs)
            return opener(results_mod.OPEN_IN[choice])(vid, s, backend_)

        def on_slot_fav(vid):
            v = lib.video(int(vid)) if vid is not None else None
            if v is None:
                raise gr.Error("This video is not in the Library any more", print_exception=False)
            lib.set_favourite(v["id"], not v["favourite"])
            return results_mod.fav_label(not v["favourite"])
        for p in panels:
            for slot in p.slots:
                slot.open_in.input(on_slot_open, [slot.open_in, slot.vid, story, backend_dd], open_outs)
                slot.fav.click(on_slot_fav, slot.vid, slot.fav)

        # ---------------------------------------------------------- API: the same request objects
        api_req = gr.JSON(visible=False)
        api_files = gr.File(file_count="multiple", visible=False)
        api_out = gr.JSON(visible=False)
        api_video = gr.Video(visible=False)
        for op in API_OPS:
            gr.Button(visible=False).click(_api(studio, op), [api_req, api_files], [api_out, api_video],
                                           api_name=op, concurrency_limit=4)
        gr.Button(visible=False).click(_api_upload(studio), api_files, api_out, api_name="upload")
    return demo


def _curve_request(v: dict) -> dict:
    """The curve editor's value -> the numbers a blend request carries."""
    return {"curve": [list(p) for p in v["mix"]], "repaint": [list(p) for p in v["repaint"]] if v.get("repaint") else None}


def _curve_text(v: dict) -> str:
    """The numbers a blend request will carry, shown in the page as compact JSON."""
    return f"Sent to the engine: `{json.dumps(_curve_request(v))}`"


def _api(studio: Studio, op: str):
    def call(request, files):
        """Run one request to completion -> (job result JSON, the first video)."""
        try:
            req = _with_files(studio, request, files)
            job = studio.submit(op, req)
            row = studio.wait(job)
        except InputError as e:
            raise _gr_error(e) from None
        vids = studio.library.videos_of_job(job)
        out = {"job": job, "state": row["state"], "error": row["error"],
               "videos": [{k: v[k] for k in ("id", "ref", "kind", "label", "seed", "width", "height", "fps",
                                             "duration_s", "lineage")} for v in vids]}
        if row["state"] != "done":
            raise gr.Error(f"job {job} {row['state']}: {row['error'] or ''}".strip(), print_exception=False)
        return out, vids[0]["path"] if vids else None
    call.__name__ = f"api_{op}"
    return call


def _api_upload(studio: Studio):
    def upload(files):
        """Upload media -> their references ('upload:<name>') for later requests."""
        try:
            return {"refs": [studio.import_upload(f, f"files[{i}]") for i, f in enumerate(files or [])]}
        except InputError as e:
            raise _gr_error(e) from None
    return upload


def _with_files(studio: Studio, request, files) -> dict:
    """Request fields written "file:K" name the K-th uploaded file of this call."""
    if isinstance(request, str):
        from engine.timeline import parse_json
        request = parse_json(request, "request")
    if not isinstance(request, dict):
        raise InputError("request: expected a JSON object")
    files = files or []
    req = dict(request)
    for k in ("image", "video", "a", "b"):
        v = req.get(k)
        if isinstance(v, str) and v.startswith("file:"):
            try:
                req[k] = studio.import_upload(files[int(v[5:])], k)
            except (ValueError, IndexError):
                raise InputError(f"{k}: {v!r} names no uploaded file; {len(files)} were sent") from None
    return req
