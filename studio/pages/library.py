"""The Library tab: everything made, searchable by prompt, playing on hover, with favourites, lineage, delete
(asked first), Make again, Reuse seed, GIF, download, Open in another tab, and the jobs to retry or cancel.

Built last, so every other tab's pickers, seed fields and result panels are there to wire "Open in" and "Reuse
seed" to."""
from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from engine.params import InputError
from engine.requests import OPS
from studio.pages import results as results_mod
from studio.pages import storyboard as sb
from studio.pages.common import Page, Studio, bind, video_info, video_name
from studio.widgets import static_text, widget_js

KINDS = ["all", *OPS]   # the filter: every operation's videos, or one kind
OPEN_TABS = ("storyboard", "remix", "blend", "loop", "recut")
OPEN_LABEL = {tab: word for word, tab in results_mod.OPEN_IN.items()}   # "recut" -> "Re-cut"
PICKER_OF = {"remix": "remix", "blend": "blend-a", "loop": "loop", "recut": "recut"}   # the picker Open in fills


# ----------------------------------------------------------------------------- what it shows
def matches(v: dict, query: str) -> bool:
    """A search: every word of the query in the video's name ("#12 remix: a blue box") or its prompt."""
    text = f"{video_name(v)} {v['label'] or ''}".lower()
    return all(w in text for w in str(query or "").lower().split())


def listed(studio: Studio, fav_only=False, kind=None, query="") -> list[dict]:
    """The videos the gallery shows, newest first: favourites only, one kind, a search (all optional)."""
    kind = None if kind in (None, "all") else kind
    return [v for v in studio.library.videos(favourites=bool(fav_only), kind=kind, limit=100_000 if query else 200)
            if matches(v, query) and v["thumb_path"] and Path(v["thumb_path"]).exists()][:200]


def gone_video(lib, ref) -> bool:
    """Whether library reference 'lib:<id>' names a video that is not there to use (deleted, or never made)."""
    v = lib.video(int(str(ref)[4:]))
    return v is None or v["deleted"]


def job_choices(jobs: list[dict]) -> list[tuple[str, int]]:
    return [(f"job {j['id']} {j['state']}: {results_mod.label_of(j['op'], j['label'])[:40]}", j["id"]) for j in jobs]


def view(studio: Studio, n_pickers: int, fav_only, kind, query) -> tuple:
    """(gallery, its ids, hover-play's videos, jobs to retry, jobs to cancel, *every source picker): the Library as
    it is now. Hover-play gets each video's URL in the videos folder, which the server serves as it is."""
    items = listed(studio, fav_only, kind, query)
    pics = [(v["thumb_path"], f"{'★ ' if v['favourite'] else ''}{video_name(v)[:48]}") for v in items]
    plays = {str(v["id"]): f"/gradio_api/file={v['path']}" for v in items}
    stuck, active = (job_choices(studio.library.jobs(states, limit=20)) for states in
                     (("interrupted", "failed", "cancelled"), ("running", "queued")))
    ch = studio.choices()
    return (pics, [v["id"] for v in items], plays, gr.update(choices=stuck, value=None),
            gr.update(choices=active, value=None), *[gr.update(choices=ch) for _ in range(n_pickers)])


def describe(studio: Studio, vid) -> tuple:
    """(player, info, selected id, download) of one video."""
    v = studio.library.video(int(vid)) if vid not in (None, "") else None
    if v is None:
        return None, "Select a video.", None, None
    if v["deleted"]:   # its record only: what it was, for Make again; no file to play or download
        return None, video_info(studio.library, v), v["id"], None
    return v["path"], video_info(studio.library, v), v["id"], v["path"]


# ----------------------------------------------------------------------------- handlers
def on_select(studio: Studio, ids, evt: gr.SelectData):
    return describe(studio, ids[evt.index] if evt.index is not None and evt.index < len(ids) else None)


def on_fav(studio: Studio, n_pickers: int, vid, fav_only, kind, query):
    v = studio.library.video(int(vid)) if vid not in (None, "") else None
    if v and not v["deleted"]:
        studio.library.set_favourite(v["id"], not v["favourite"])
    return (*describe(studio, vid), *view(studio, n_pickers, fav_only, kind, query))


def delete_question(lib, vid) -> str:
    """What deleting a video means, asked before it happens: the videos made from it are named."""
    v = lib.video(int(vid)) if vid not in (None, "") else None
    if v is None:
        raise InputError("video: select a video first")
    if v["deleted"]:
        raise InputError(f"video: #{v['id']} was deleted already")
    children = [c for c in lib.videos(limit=100_000) if v["ref"] in [r for refs in c["lineage"].values() for r in refs]]
    made = (f" {', '.join(video_name(c) for c in children[:5])} {'was' if len(children) == 1 else 'were'} made from "
            "it and will say it was deleted." if children else "")
    return f"Delete **{html.escape(video_name(v))}** for good?{html.escape(made)}"


def on_ask_delete(studio: Studio, vid):
    return gr.update(visible=True), delete_question(studio.library, vid)


def on_delete(studio: Studio, n_pickers: int, vid, fav_only, kind, query):
    if vid not in (None, ""):
        studio.library.delete(int(vid))
        gr.Info(f"Deleted #{int(vid)}")
    return (gr.update(visible=False), None, "Select a video.", None, None, *view(studio, n_pickers, fav_only, kind,
                                                                                query))


def on_gif(studio: Studio, vid):
    if vid in (None, ""):
        raise InputError("video: select a video first")
    return gr.update(value=str(studio.library.gif(int(vid))), visible=True)


def make_again(studio: Studio, vid) -> tuple[int, dict]:
    """Queue the request that made library video `vid` with that video's own seed (one variation) -> (job, video)."""
    v = studio.library.video(int(vid)) if vid not in (None, "") else None
    job = studio.library.job(v["job_id"]) if v and v["job_id"] is not None else None
    if job is None:
        raise InputError("video: select a video made in the studio first")
    gone = [r for refs in v["lineage"].values() for r in refs
            if str(r).startswith("lib:") and gone_video(studio.library, r)]
    if gone:
        raise InputError(f"#{v['id']} was made from {results_mod.ref_name(gone[0])}, which was deleted: without its "
                         "source video it cannot be made again")
    req = job["request"] if v["seed"] is None else dict(job["request"], seed=v["seed"], variations=1)
    return studio.submit(job["op"], req, job["backend"]), v


def on_again(studio: Studio, vid):
    """This video made again: its job's request with its own seed, so the same video comes back."""
    new, v = make_again(studio, vid)
    gr.Info(f"Queued (job {new}): #{v['id']} again, seed {v['seed']}")
    return {"job": new, "tab": results_mod.KIND_TAB.get(v["kind"], "create")}


def on_reuse(studio: Studio, tabs: tuple, vid):
    """The seed of the selected video into the seed field of the tab that makes its kind (`tabs`: the seed fields'
    tabs, in the order of the outputs)."""
    v = studio.library.video(int(vid)) if vid not in (None, "") else None
    if v is None or v["seed"] is None:
        raise InputError("seed: select a video made by the model first")
    tab = results_mod.KIND_TAB.get(v["kind"], "create")
    return (gr.Tabs(selected=tab), *[str(v["seed"]) if t == tab else gr.update() for t in tabs])


def on_retry(studio: Studio, job):
    if job in (None, ""):
        raise InputError("job: choose an interrupted or failed job")
    new = studio.retry(int(job))
    gr.Info(f"Queued (job {new}): job {job} again")
    return {"job": new, "tab": "create"}


def on_cancel(studio: Studio, chosen, w):
    """The job chosen in the list, else the one this page waits on: never someone else's newest."""
    job = chosen if chosen not in (None, "") else (w or {}).get("job")
    if not str(job).isdigit():
        raise InputError("job: choose a queued or running job to cancel")
    if not studio.cancel(int(job)):
        raise InputError(f"job: job {int(job)} has already ended")
    gr.Info(f"Cancelling job {int(job)}")


def open_in(studio: Studio, pickers: tuple, tab: str, vid, s, backend):
    """A library video opened in another tab: chosen in its source picker, or, in the Storyboard, added as a card.
    -> (tabs, *pickers, story, *what the storyboard shows)."""
    if vid in (None, ""):
        raise InputError("video: select a video first")
    ref = f"lib:{int(vid)}"
    if gone_video(studio.library, ref):
        raise InputError(f"video: #{int(vid)} is not in the Library any more")
    ups = [gr.update(choices=studio.choices(), value=ref) if p == PICKER_OF.get(tab) else gr.update() for p in pickers]
    if tab == "storyboard":
        s = sb.with_video(studio, s, ref)
        return (gr.Tabs(selected=tab), *ups, s, *sb.refresh(studio, s, None, backend))
    return (gr.Tabs(selected=tab), *ups, s, *[gr.update()] * 5)


def on_slot_open(studio: Studio, pickers: tuple, choice, vid, s, backend):
    """A result's own "Open in" menu."""
    if choice not in results_mod.OPEN_IN:
        return (gr.update(),) * (len(pickers) + 7)
    return open_in(studio, pickers, results_mod.OPEN_IN[choice], vid, s, backend)


def on_slot_fav(studio: Studio, vid):
    v = studio.library.video(int(vid)) if vid not in (None, "") else None
    if v is None or v["deleted"]:
        raise InputError("video: this video is not in the Library any more")
    studio.library.set_favourite(v["id"], not v["favourite"])
    return results_mod.fav_label(not v["favourite"])


# ----------------------------------------------------------------------------- the tab
@dataclass
class Library:
    refresh: list    # the inputs of view() after n_pickers
    outputs: list    # view()'s outputs


def build(page: Page, story: sb.Storyboard) -> Library:
    studio = page.studio
    with gr.Row():
        query = gr.Textbox(label="Search", placeholder="words of the prompt, or #12", max_lines=1, elem_id="lib-search",
                           scale=3)
        fav_only = gr.Checkbox(label="Favourites only", elem_id="lib-fav-only")
        kind = gr.Dropdown(KINDS, value="all", label="Kind", elem_id="lib-kind")
        refresh = gr.Button("Refresh", size="sm", elem_id="lib-refresh")
    gallery = gr.Gallery(label="Videos", columns=6, height=260, allow_preview=False, elem_id="lib-gallery")
    hover = gr.HTML({}, html_template="", js_on_load=static_text("hoverplay.js") + widget_js("libdrag.js"),
                    elem_id="lib-hover-play", apply_default_css=False, padding=False)   # libdrag: clips drag out
    ids = gr.State([])
    with gr.Row():
        with gr.Column(scale=2):
            player = gr.Video(label="Selected", autoplay=True, interactive=False, elem_id="lib-video")
        with gr.Column(scale=2):
            info = gr.Markdown("Select a video.", elem_id="lib-info")
            sel = gr.Number(value=None, precision=0, visible=False)
            with gr.Row():
                fav = gr.Button("★ Favourite", size="sm", elem_id="lib-fav")
                delete = gr.Button("Delete", size="sm", variant="stop", elem_id="lib-delete")
                mp4 = gr.DownloadButton("Download mp4", size="sm", elem_id="lib-mp4")
                mk_gif = gr.Button("Make GIF", size="sm", elem_id="lib-gif")
                again = gr.Button("Make again", size="sm", elem_id="lib-again")
                reuse = gr.Button("Reuse seed", size="sm", elem_id="lib-reuse-seed")
            with gr.Row(visible=False, elem_id="lib-confirm") as confirm:  # deleting asks first
                question = gr.Markdown("", elem_id="lib-confirm-text")
                yes = gr.Button("Delete", size="sm", variant="stop", elem_id="lib-delete-yes")
                no = gr.Button("Keep it", size="sm", elem_id="lib-delete-no")
            gif = gr.File(label="GIF", visible=False, interactive=False)
            with gr.Row():
                opens = {t: gr.Button(f"Open in {OPEN_LABEL[t]}", size="sm", elem_id=f"lib-open-{t}")
                         for t in OPEN_TABS}
    with gr.Row():
        retry_job = gr.Dropdown([], label="Interrupted or failed jobs", elem_id="lib-retry-job")
        retry = gr.Button("Retry", size="sm", elem_id="lib-retry")
        active_job = gr.Dropdown([], label="Queued or running jobs", elem_id="lib-active-job",
                                 allow_custom_value=True)  # the list lags the queue: checked on cancel
        cancel = gr.Button("Cancel job", size="sm", elem_id="lib-cancel")
    lib = Library([fav_only, kind, query], [gallery, ids, hover, retry_job, active_job, *page.pickers.values()])
    shown = [player, info, sel, mp4]
    _wire(page, story, lib, shown, locals())
    return lib


def _wire(page: Page, story: sb.Storyboard, lib: Library, shown: list, c: dict) -> None:
    """The Library's events (`c`: the components build() made, by name)."""
    studio, n = page.studio, len(page.pickers)
    # one queue for everything that lists the library, answered in the order asked: opening the tab and searching
    # at once (a busy machine) once let the tab's older, unfiltered list land after the search's and replace it
    in_order = {"concurrency_id": "library-view", "concurrency_limit": 1}
    for ev in (c["refresh"].click, c["fav_only"].change, c["kind"].change, c["query"].submit, page.demo.load,
               page.tabs.select):
        ev(bind(view, studio, n), lib.refresh, lib.outputs, **in_order)
    c["gallery"].select(bind(on_select, studio), c["ids"], shown)
    c["fav"].click(bind(on_fav, studio, n), [c["sel"], *lib.refresh], [*shown, *lib.outputs], **in_order)
    c["delete"].click(bind(on_ask_delete, studio), c["sel"], [c["confirm"], c["question"]])
    c["no"].click(lambda: gr.update(visible=False), None, c["confirm"])
    c["yes"].click(bind(on_delete, studio, n), [c["sel"], *lib.refresh], [c["confirm"], *shown, *lib.outputs],
                   **in_order)
    c["mk_gif"].click(bind(on_gif, studio), c["sel"], c["gif"])
    c["again"].click(bind(on_again, studio), c["sel"], page.watch)
    c["reuse"].click(bind(on_reuse, studio, tuple(page.seeds)), c["sel"], [page.tabs, *page.seeds.values()])
    c["retry"].click(bind(on_retry, studio), c["retry_job"], page.watch)
    c["cancel"].click(bind(on_cancel, studio), [c["active_job"], page.watch], None)
    pickers = tuple(page.pickers)
    open_outs = [page.tabs, *page.pickers.values(), story.state, *story.shown]
    for tab, btn in c["opens"].items():
        btn.click(bind(open_in, studio, pickers, tab), [c["sel"], story.state, page.backend], open_outs)
    for p in page.panels:   # each result's own actions
        for slot in p.slots:
            slot.open_in.input(bind(on_slot_open, studio, pickers), [slot.open_in, slot.vid, story.state, page.backend],
                               open_outs)
            slot.fav.click(bind(on_slot_fav, studio), slot.vid, slot.fav)
