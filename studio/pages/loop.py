"""The Loop tab: a video made to play on repeat, a generated bridge joining its end to its start. The bridge is
chosen as Sora offers it, Short / Normal / Long, or typed (Custom)."""
from __future__ import annotations

import gradio as gr

from studio.pages import controls as ctl
from studio.pages import results as results_mod
from studio.pages.common import Page, Studio, bind, queued, sampling, sampling_controls, source_picker

BRIDGES = {"Short": 0.5, "Normal": 1.0, "Long": 2.0}   # seconds of generated bridge


def bridge_of(length, typed) -> float:
    """The bridge the page's choice means: a named length, or the typed Custom one (checked in words)."""
    return ctl.chosen(length, typed, BRIDGES, ctl.BRIDGE, "bridge_s")


def on_loop(studio: Studio, src, up, length, bridge, context, prompt, steps, guidance, seed, backend):
    bridge, context = bridge_of(length, bridge), ctl.CONTEXT.check(context)  # typed values before an upload is taken
    return queued(studio, "loop", "loop", {"video": studio.source(src, up, "video"), "bridge_s": bridge,
                                           "context_s": context, "prompt": prompt or "",
                                           **sampling(steps, guidance, seed)}, backend)


def build(page: Page) -> None:
    with gr.Row():
        with gr.Column():
            src, up = source_picker(page, "Video", "loop")
            length = gr.Radio([*BRIDGES, "Custom"], value="Normal", elem_id="loop-length",
                              label="Bridge", info=" · ".join(f"{k} {v:g} s" for k, v in BRIDGES.items()))
            bridge = ctl.BRIDGE.number(elem_id="loop-bridge", visible=False)
            context = ctl.CONTEXT.number(elem_id="loop-context")
            ctl.said_as_typed(gr.Markdown("", elem_id="loop-note"), [(bridge, ctl.BRIDGE), (context, ctl.CONTEXT)])
            prompt = gr.Textbox(label="Prompt (optional)")
            steps, guidance, seed = sampling_controls("loop")
            go = gr.Button("Make loop", variant="primary", elem_id="loop-go")
        with gr.Column():
            page.panels.append(results_mod.panel("loop", "loop", label="Loop (plays on repeat)", loop=True))
    page.seeds["loop"] = seed
    length.change(lambda v: gr.update(visible=v == "Custom"), length, bridge)
    go.click(bind(on_loop, page.studio), [src, up, length, bridge, context, prompt, steps, guidance, seed,
                                          page.backend], [page.watch, page.note])
