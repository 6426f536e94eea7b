"""The Remix tab: a video made again from a new prompt, changed by a chosen amount."""
from __future__ import annotations

import gradio as gr

from studio.pages import controls as ctl
from studio.pages import results as results_mod
from studio.pages.common import Page, Studio, bind, queued, sampling, sampling_controls, source_picker

AMOUNTS = {"Subtle": 0.25, "Mild": 0.5, "Strong": 0.8}   # the named amounts; "Custom" opens the typed one


def amount_of(level, amount) -> float:
    """The remix amount the page's choice means: a named one, or the typed Custom amount (checked in words)."""
    return ctl.chosen(level, amount, AMOUNTS, ctl.AMOUNT, "amount")


def on_remix(studio: Studio, src, up, prompt, level, amount, steps, guidance, seed, backend):
    amount = amount_of(level, amount)   # what is typed is checked before an upload is taken
    return queued(studio, "remix", "remix", {"video": studio.source(src, up, "video"), "prompt": prompt or "",
                                             "amount": amount, **sampling(steps, guidance, seed)}, backend)


def build(page: Page) -> None:
    with gr.Row():
        with gr.Column():
            src, up = source_picker(page, "Video", "remix")
            prompt = gr.Textbox(label="New prompt", elem_id="remix-prompt")
            level = gr.Radio([*AMOUNTS, "Custom"], value="Mild", label="Amount", elem_id="remix-level")
            amount = ctl.AMOUNT.number(visible=False, elem_id="remix-amount")
            ctl.said_as_typed(gr.Markdown("", elem_id="remix-amount-note"), [(amount, ctl.AMOUNT)])
            steps, guidance, seed = sampling_controls("remix")
            go = gr.Button("Remix", variant="primary", elem_id="remix-go")
        with gr.Column():
            page.panels.append(results_mod.panel("remix", "remix"))
    page.seeds["remix"] = seed
    level.change(lambda lv: gr.update(visible=lv == "Custom"), level, amount)
    go.click(bind(on_remix, page.studio), [src, up, prompt, level, amount, steps, guidance, seed, page.backend],
             [page.watch, page.note])
