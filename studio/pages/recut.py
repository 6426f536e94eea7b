"""The Re-cut tab: trim (with in and out handles on a filmstrip of the clip) or change the frame rate without the
model; extend forward or backward, or upscale, through it."""
from __future__ import annotations

import gradio as gr

from engine.params import InputError
from studio import widgets
from studio.pages import controls as ctl
from studio.pages import results as results_mod
from studio.pages.common import (BACKEND_RESOLUTIONS, RESOLUTIONS, Page, Studio, bind, data_uri, queued, sampling,
                                 sampling_controls, source_picker)

ACTIONS = ["Trim / fps", "Extend forward", "Extend backward", "Upscale"]
FILM_FRAMES = 10   # frames shown on the filmstrip
NO_FILM = {"duration_s": 0.0, "frames": [], "in_s": 0.0, "out_s": 0.0}


def film_value(studio: Studio, ref: str | None, n: int = FILM_FRAMES) -> dict:
    """The filmstrip of a clip: n frames spread over it, its length, in and out at its two ends."""
    if not ref:
        return dict(NO_FILM)
    from engine.video_io import probe, read_video
    path = studio.library.resolve("video", ref)
    d = probe(path, field="video").duration_s
    # one short read per frame shown: a long clip is never decoded whole for ten thumbnails
    frames = [read_video(path, start_s=t, end_s=t + 1e-3, field="video")[0] for t in ((k + 0.5) * d / n
                                                                                     for k in range(n))]
    return {"duration_s": round(d, 3), "frames": [data_uri(f, 96) for f in frames], "in_s": 0.0, "out_s": round(d, 3)}


def on_source(studio: Studio, src, up):
    """A clip chosen or uploaded: its filmstrip, trimmed nowhere yet (start 0, end 0 = to the end)."""
    ref = studio.source(src, up, "video") if (src or up is not None) else None
    return film_value(studio, ref), 0.0, 0.0


def on_film(v) -> tuple:
    """The handles dragged -> the trim fields (an out point at the clip's end is 0: to the end)."""
    if not isinstance(v, dict) or not v.get("duration_s"):
        return gr.update(), gr.update()
    end = float(v["out_s"])
    return float(v["in_s"]), 0.0 if abs(end - float(v["duration_s"])) < 1e-3 else end


def handles_at(v, start, end, first: ctl.Bound = ctl.TRIM_START, last: ctl.Bound = ctl.TRIM_END):
    """In and out typed in the fields (bounds first, last) -> the handles follow (a value out of range leaves
    them: the tab's button says why). Loop's section uses it too."""
    if not isinstance(v, dict) or not v.get("duration_s"):
        return gr.update()
    try:
        a, b = first.check(start), last.check(end)
    except InputError:
        return gr.update()
    d = float(v["duration_s"])
    b = d if b <= 0 else min(b, d)
    return dict(v, in_s=a, out_s=b) if a < b else gr.update()


def on_trim_typed(v, start, end):
    return handles_at(v, start, end)


def span_of(studio: Studio, ref: str, start, end, first: ctl.Bound = ctl.TRIM_START,
            last: ctl.Bound = ctl.TRIM_END) -> list[float] | None:
    """In and out fields -> [in_s, out_s] of the clip (an out of 0 means its own end), None when that is the
    whole clip."""
    start, end = first.check(start), last.check(end)
    if end <= 0 and not start:
        return None
    from engine.video_io import probe
    return [start, end if end > 0 else probe(studio.library.resolve("video", ref)).duration_s]


def trim_request(studio: Studio, ref: str, start, end, fps) -> dict:
    """Trim and frame rate -> the recut request (an end of 0 means the clip's own end)."""
    req, trim = {"video": ref}, span_of(studio, ref, start, end)
    if trim:
        req["trim"] = trim
    if fps not in (None, "keep"):
        req["fps"] = float(fps)
    return req


def on_recut(studio: Studio, src, up, action, start, end, fps, seconds, res, prompt, steps, guidance, seed, backend):
    ref = studio.source(src, up, "video")
    if action == "Trim / fps":
        return queued(studio, "recut", "recut", trim_request(studio, ref, start, end, fps), backend)
    smp = sampling(steps, guidance, seed)
    if action == "Upscale":
        return queued(studio, "recut", "recut", {"video": ref, "upscale": int(res), "prompt": prompt or "", **smp},
                      backend)
    return queued(studio, "recut", "extend", {"video": ref, "extend_s": ctl.EXTEND.check(seconds), "prompt": prompt or "",
                                              "direction": "forward" if action == "Extend forward" else "backward",
                                              **smp}, backend)


def on_backend(name):
    """Upscale offers the short sides the chosen model was made for."""
    sizes = BACKEND_RESOLUTIONS.get(name, RESOLUTIONS)
    return gr.update(choices=sizes, value=sizes[-1])


def build(page: Page) -> None:
    sizes = BACKEND_RESOLUTIONS.get(page.studio.default, RESOLUTIONS)
    with gr.Row():
        with gr.Column():
            src, up = source_picker(page, "Video", "recut")
            action = gr.Radio(ACTIONS, value=ACTIONS[0], label="What to do", elem_id="recut-action")
            film = widgets.filmstrip(NO_FILM)
            with gr.Row():
                start = ctl.TRIM_START.number(0.0, elem_id="recut-start")
                end = ctl.TRIM_END.number(0.0, "Trim end (s, 0 = to the end)", elem_id="recut-end")
            fps = gr.Dropdown(["keep", 6, 8, 12, 24, 30], value="keep", label="fps")
            seconds = ctl.EXTEND.number(elem_id="recut-seconds")
            ctl.said_as_typed(gr.Markdown("", elem_id="recut-note"), [(start, ctl.TRIM_START), (end, ctl.TRIM_END),
                                                                     (seconds, ctl.EXTEND)])
            res = gr.Dropdown(sizes, value=sizes[-1], label="Upscale to (short side, px)")
            prompt = gr.Textbox(label="Prompt (extend / upscale, optional)")
            steps, guidance, seed = sampling_controls("recut")
            go = gr.Button("Apply", variant="primary", elem_id="recut-go")
        with gr.Column():
            page.panels.append(results_mod.panel("recut", "recut"))
    page.seeds["recut"] = seed
    page.backend.change(on_backend, page.backend, res)
    for ev in (src.change, up.upload, up.clear):
        ev(bind(on_source, page.studio), [src, up], [film, start, end])
    film.input(on_film, film, [start, end], show_progress="hidden")
    for box in (start, end):
        box.submit(on_trim_typed, [film, start, end], film, show_progress="hidden")
        box.blur(on_trim_typed, [film, start, end], film, show_progress="hidden")
    go.click(bind(on_recut, page.studio), [src, up, action, start, end, fps, seconds, res, prompt, steps, guidance,
                                           seed, page.backend], [page.watch, page.note])
