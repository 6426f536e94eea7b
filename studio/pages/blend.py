"""The Blend tab: two videos mixed along a curve drawn in the page (studio/widgets.py curve_editor)."""
from __future__ import annotations

import html
import json

import gradio as gr

from engine.params import InputError
from studio import widgets
from studio.pages import results as results_mod
from studio.pages.common import Page, Studio, bind, queued, sampling, sampling_controls, source_picker


def curve_request(v: dict) -> dict:
    """The curve editor's value -> the numbers a blend request carries."""
    return {"curve": [list(p) for p in v["mix"]], "repaint": [list(p) for p in v["repaint"]] if v.get("repaint") else None}


def curve_text(v: dict) -> str:
    """The numbers a blend request will carry, shown in the page as compact JSON."""
    return f"Sent to the engine: `{json.dumps(curve_request(v))}`"


def on_curve(v):
    """The numbers sent and the curve said in words follow every edit; a bad curve is said instead."""
    try:
        v = widgets.normalize_curve(v)
    except InputError as e:
        return gr.update(), f"<span>{html.escape(str(e))}</span>"
    return curve_text(v), widgets.curve_preview_html(v)


def on_blend(studio: Studio, a, a_up, b, b_up, prompt_a, prompt_b, v, steps, guidance, seed, backend):
    req = {"a": studio.source(a, a_up, "a"), "b": studio.source(b, b_up, "b"), "prompt_a": prompt_a or "",
           "prompt_b": prompt_b or "", **curve_request(widgets.normalize_curve(v)), **sampling(steps, guidance, seed)}
    return queued(studio, "blend", "blend", req, backend)


def build(page: Page) -> None:
    first = widgets.CURVE_PRESETS["transition"]
    with gr.Row():
        with gr.Column():
            a, a_up = source_picker(page, "Video A", "blend-a")
            b, b_up = source_picker(page, "Video B", "blend-b")
            with gr.Row():
                prompt_a = gr.Textbox(label="Prompt A (optional)")
                prompt_b = gr.Textbox(label="Prompt B (optional)")
        with gr.Column():
            curve = widgets.curve_editor(first)
            with gr.Row():
                presets = {k: gr.Button(k.capitalize(), size="sm", elem_id=f"curve-{k}") for k in widgets.CURVE_PRESETS}
                edit_mode = gr.Radio(["mix", "repaint"], value="mix", label="Edit curve")
                auto_repaint = gr.Button("Automatic repaint", size="sm")
            curve_note = gr.HTML(widgets.curve_preview_html(first))
            numbers = gr.Markdown(curve_text(first), elem_id="curve-numbers")
            steps, guidance, seed = sampling_controls("blend")
            go = gr.Button("Blend", variant="primary", elem_id="blend-go")
    page.panels.append(results_mod.panel("blend", "blend"))
    page.seeds["blend"] = seed

    shown = [numbers, curve_note]
    curve.change(on_curve, curve, shown)
    for name, btn in presets.items():
        btn.click(lambda n=name: widgets.curve_preset(n), None, curve).then(on_curve, curve, shown)
    edit_mode.change(lambda v, m: dict(widgets.normalize_curve(v), edit=m), [curve, edit_mode], curve)
    auto_repaint.click(lambda v: dict(widgets.normalize_curve(v), repaint=None), curve, curve).then(
        on_curve, curve, shown)
    go.click(bind(on_blend, page.studio), [a, a_up, b, b_up, prompt_a, prompt_b, curve, steps, guidance, seed,
                                           page.backend], [page.watch, page.note])
