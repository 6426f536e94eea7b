"""The Loop tab: a video made to play on repeat, a generated bridge joining its end to its start. The section to
loop is picked with in and out handles on a filmstrip of the clip (or typed), as on Re-cut; the bridge is chosen as
Sora offers it, Short / Normal / Long, or typed (Custom)."""
from __future__ import annotations

import gradio as gr

from studio import widgets
from studio.pages import controls as ctl
from studio.pages import recut
from studio.pages import results as results_mod
from studio.pages.common import Page, Studio, bind, queued, sampling, sampling_controls, source_picker

BRIDGES = {"Short": 0.5, "Normal": 1.0, "Long": 2.0}   # seconds of generated bridge


def bridge_of(length, typed) -> float:
    """The bridge the page's choice means: a named length, or the typed Custom one (checked in words)."""
    return ctl.chosen(length, typed, BRIDGES, ctl.BRIDGE, "bridge_s")


def on_section_typed(v, start, end):
    """The section typed in its fields -> the filmstrip's handles follow."""
    return recut.handles_at(v, start, end, ctl.LOOP_IN, ctl.LOOP_OUT)


def on_loop(studio: Studio, src, up, start, end, length, bridge, context, prompt, steps, guidance, seed, backend):
    # typed values are checked before an upload is taken
    bridge, context = bridge_of(length, bridge), ctl.CONTEXT.check(context)
    ctl.LOOP_IN.check(start)
    ctl.LOOP_OUT.check(end)
    ref = studio.source(src, up, "video")
    req = {"video": ref, "bridge_s": bridge, "context_s": context, "prompt": prompt or "",
           **sampling(steps, guidance, seed)}
    section = recut.span_of(studio, ref, start, end, ctl.LOOP_IN, ctl.LOOP_OUT)
    return queued(studio, "loop", "loop", dict(req, section=section) if section else req, backend)


def build(page: Page) -> None:
    with gr.Row():
        with gr.Column():
            src, up = source_picker(page, "Video", "loop")
            film = widgets.filmstrip(recut.NO_FILM, elem_id="loop-film")
            with gr.Row():
                start = ctl.LOOP_IN.number(0.0, elem_id="loop-start")
                end = ctl.LOOP_OUT.number(0.0, "Loop to (s, 0 = to the end)", elem_id="loop-end")
            length = gr.Radio([*BRIDGES, "Custom"], value="Normal", elem_id="loop-length",
                              label="Bridge", info=" · ".join(f"{k} {v:g} s" for k, v in BRIDGES.items()))
            bridge = ctl.BRIDGE.number(elem_id="loop-bridge", visible=False)
            context = ctl.CONTEXT.number(elem_id="loop-context")
            ctl.said_as_typed(gr.Markdown("", elem_id="loop-note"), [(bridge, ctl.BRIDGE), (context, ctl.CONTEXT),
                                                                    (start, ctl.LOOP_IN), (end, ctl.LOOP_OUT)])
            prompt = gr.Textbox(label="Prompt (optional)")
            steps, guidance, seed = sampling_controls("loop")
            go = gr.Button("Make loop", variant="primary", elem_id="loop-go")
        with gr.Column():
            page.panels.append(results_mod.panel("loop", "loop", label="Loop (plays on repeat)", loop=True))
    page.seeds["loop"] = seed
    length.change(lambda v: gr.update(visible=v == "Custom"), length, bridge)
    for ev in (src.change, up.upload, up.clear):     # as on Re-cut: a new clip, its filmstrip, the whole clip
        ev(bind(recut.on_source, page.studio), [src, up], [film, start, end])
    film.input(recut.on_film, film, [start, end], show_progress="hidden")
    for box in (start, end):
        box.submit(on_section_typed, [film, start, end], film, show_progress="hidden")
        box.blur(on_section_typed, [film, start, end], film, show_progress="hidden")
    go.click(bind(on_loop, page.studio), [src, up, start, end, length, bridge, context, prompt, steps, guidance,
                                          seed, page.backend], [page.watch, page.note])
