"""The studio page: Create, Storyboard, Remix, Blend, Loop, Re-cut and Library, on Gradio Blocks.

Each tab is a module of studio/pages/ with a `build(page)` and top-level handlers (tests call them without a
browser); this module puts the tabs together and wires what spans them: the job list and its polling, each
tab's result when its job ends, and the API endpoints. Every button builds a request object
(engine/requests.py) and queues it as a job (studio/jobs.py). Media are named by reference (`lib:<id>`,
`upload:<name>`) and resolved by the library, never taken as paths from a request. The same requests are served
as API endpoints: /generate, /storyboard, /remix, /blend, /loop, /extend, /recut (studio/pages/api.py).
"""
from __future__ import annotations

import gradio as gr

from studio.pages import api, blend, create, jobs_list, loop, recut, remix
from studio.pages import library as library_tab
from studio.pages import results as results_mod
from studio.pages import storyboard as storyboard_tab
from studio.pages.common import (BACKEND_FPS, BACKEND_RESOLUTIONS, RESOLUTIONS, Page, Studio, bind, memory_choices,
                                 seed_request, video_info, video_name)
from studio.pages.library import delete_question, make_again
from studio.widgets import static_text

CSS = static_text("studio.css")
__all__ = ["BACKEND_FPS", "BACKEND_RESOLUTIONS", "CSS", "RESOLUTIONS", "Studio", "build", "delete_question",
           "make_again", "seed_request", "video_info", "video_name"]
# When a job ends its result is shown, and scrolled into view when its tab is open (the Storyboard's sits low).
SCROLL_TO_RESULT = """(notice) => {
  const prefix = String(notice || '').split('|')[2];
  const row = prefix && document.getElementById(prefix + '-results');
  if (row && row.offsetParent) row.scrollIntoView({block: 'nearest'});
  return notice;
}"""


def tick(studio: Studio, panels: list, w, shown, reported) -> list:
    """The job list, and the watched job's end once: its results in its tab, a note and a toast. The poll
    never writes `watch`: one that started before a click queued a job would put the old value back."""
    outs = [jobs_list.render(studio)]
    w = w if isinstance(w, dict) and isinstance(w.get("job"), int) else None
    vids, msg = studio.result(w["job"]) if w and w["job"] != reported else ([], "")
    mine = None
    for p in panels:
        n = len(p.slots)
        if msg and p.tab == w["tab"]:
            outs, mine = outs + results_mod.panel_updates(vids, n), p
        else:
            outs += results_mod.unchanged(n)
    if not msg:
        return outs + [gr.update()] * 4
    shown = dict(shown or {}, **{w["tab"]: w["job"]}) if vids else shown
    notice = f"{w['job']}|{'ok' if vids else 'bad'}|{mine.prefix if mine else ''}|{msg}"
    return outs + [msg, notice, shown, w["job"]]


def on_job_click(studio: Studio, evt: gr.EventData):
    """A job's own Cancel in the list, or a click on the job: its result, in its tab."""
    d = getattr(evt, "_data", None) or {}
    w, said = jobs_list.act(studio, d.get("job"), d.get("action"))
    if said:
        gr.Info(said)
    return (gr.update(),) * 3 if w is None else (w, gr.Tabs(selected=w["tab"]), None)  # None: show it again


def memory_props(studio: Studio, name) -> dict:
    """The Memory dropdown for a model: its setting, editable for a real model; fixed, saying why, for the
    embedded one (offload, fp8 and VAE tiling are ways to fit a big model on a card; a small one runs as it is)."""
    from engine.backends.registry import REAL
    if name in REAL and studio.memory_in_page:
        return dict(value=studio.memory(name), interactive=True,
                    info="how the model shares GPU memory: offload, fp8 weights, VAE tiling/slicing; "
                         "it loads with this for its next job")
    why = ("memory settings mean something only for real models (LTX-Video, Wan); this one runs as it is"
           if name not in REAL else "jobs run on a Ray cluster: its workers' own setting ($CINEPATCH_MEMORY)")
    return dict(value="none", interactive=False, info=why)


def memory_field(studio: Studio, name):
    return gr.update(**memory_props(studio, name))


def on_memory(studio: Studio, name, setting) -> str:
    said = studio.set_memory(name, setting)
    gr.Info(said)
    return said


def _header(studio: Studio):
    from engine.backends.registry import configured
    with gr.Row():
        gr.Markdown("## cinepatch studio")
        backend = gr.Dropdown(configured(), value=studio.default, label="Model", elem_id="backend",
                              info="the embedded model; LTX-Video / Wan when their folder is set", scale=0,
                              min_width=220)
        memory = gr.Dropdown(memory_choices(), label="Memory", elem_id="memory", scale=0, min_width=220,
                             **memory_props(studio, studio.default))
    with gr.Row():
        jobs_html = gr.HTML(jobs_list.render(studio), elem_id="jobs", js_on_load=jobs_list.JS)
    return backend, memory, jobs_html


def _tabs(page: Page):
    """The tabs, in order; the Library last, as it wires to the others' pickers, seeds and results."""
    with gr.Tabs(elem_id="tabs") as page.tabs:
        with gr.Tab("Create", id="create"):
            made = create.build(page)
        with gr.Tab("Storyboard", id="storyboard"):
            story = storyboard_tab.build(page)
        for name, mod in (("Remix", remix), ("Blend", blend), ("Loop", loop), ("Re-cut", recut)):
            with gr.Tab(name, id=mod.__name__.rsplit(".", 1)[-1]):
                mod.build(page)
        with gr.Tab("Library", id="library"):
            library_tab.build(page, story)
    for p in page.panels:
        for slot in p.slots:
            slot.reuse.click(bind(results_mod.seed_of), slot.reuse, page.seeds[p.tab])
    return made


def build(studio: Studio) -> gr.Blocks:
    with gr.Blocks(title="cinepatch studio") as demo:
        # kept in the browser, so a reload keeps them: the job this page waits on, the job each tab shows, the prompt
        watch = gr.BrowserState(None, storage_key="cinepatch-watch")
        shown = gr.BrowserState({}, storage_key="cinepatch-shown")
        draft = gr.BrowserState("", storage_key="cinepatch-prompt")
        done_note = gr.Textbox(visible=False)
        reported = gr.State(None)   # the watched job whose end this page has shown (opening a job resets it)
        backend, memory, jobs_html = _header(studio)
        page = Page(studio, demo, watch, gr.Markdown("", elem_id="note"), backend)
        backend.change(bind(memory_field, studio), backend, memory, show_progress="hidden")
        memory.input(bind(on_memory, studio), [backend, memory], page.note)   # a pick, not the model's change
        made = _tabs(page)

        # polling: the job list; a watched job's end -> its result, a note, a toast (and the pickers list it)
        slots = [o for p in page.panels for o in p.outputs]
        gr.Timer(0.7).tick(bind(tick, studio, page.panels), [watch, shown, reported],
                           [jobs_html, *slots, page.note, done_note, shown, reported], show_progress="hidden",
                           queue=False)
        done_note.change(results_mod.notify, done_note, None, js=SCROLL_TO_RESULT, show_progress="hidden")
        pickers = list(page.pickers.values())
        done_note.change(lambda: [gr.update(choices=studio.choices()) for _ in pickers], None, pickers,
                         show_progress="hidden")
        jobs_html.click(bind(on_job_click, studio), None, [watch, page.tabs, reported])
        demo.load(lambda sh, d: [*results_mod.restored(studio, sh, page.panels), d or gr.update()], [shown, draft],
                  [*slots, made.prompt])
        made.prompt.change(lambda t: t, made.prompt, draft, show_progress="hidden", queue=False)
        api.build(studio)
    return demo
