"""Result panels: what a finished job shows in its tab — its videos side by side, each with the seed it was
made with and a one-click "Reuse seed"."""
from __future__ import annotations

import re
from dataclasses import dataclass

import gradio as gr

from engine.params import InputError
from engine.requests import OPS

MAX_SHOWN = 4   # the most variations the page asks for


OPEN_IN = {"Storyboard": "storyboard", "Remix": "remix", "Blend": "blend", "Loop": "loop", "Re-cut": "recut"}


@dataclass
class Slot:
    """One result with its own actions: reuse its seed, open it in another tab, favourite it, download it."""
    video: gr.Video
    caption: gr.Markdown
    reuse: gr.Button          # "Reuse seed N": N into the tab's seed field
    vid: gr.Number            # its library id (hidden)
    open_in: gr.Dropdown
    fav: gr.Button
    download: gr.DownloadButton

    @property
    def outputs(self) -> list:
        return [self.video, self.caption, self.reuse, self.vid, self.open_in, self.fav, self.download]


@dataclass
class Panel:
    tab: str
    slots: list[Slot]
    prefix: str      # the row is `#<prefix>-results`

    @property
    def outputs(self) -> list:
        return [c for s in self.slots for c in s.outputs]


def panel(tab: str, prefix: str, n: int = 1, label: str = "Result", loop: bool = False) -> Panel:
    """n result slots in a row; the first is `#<prefix>-result`, the others `#<prefix>-result-<k>` (hidden until used)."""
    slots = []
    with gr.Row(elem_id=f"{prefix}-results", equal_height=False):
        for k in range(n):
            with gr.Column(min_width=160):
                sid = f"{prefix}-result" if k == 0 else f"{prefix}-result-{k}"
                video = gr.Video(label=label if n == 1 else f"{label} {k + 1}", autoplay=True, loop=loop,
                                 interactive=False, elem_id=sid, visible=k == 0)
                caption = gr.Markdown("", elem_id=f"{sid}-caption")
                with gr.Row():
                    reuse = gr.Button("Reuse seed", size="sm", visible=False, elem_id=f"{sid}-reuse", min_width=80)
                    fav = gr.Button("☆", size="sm", visible=False, elem_id=f"{sid}-fav", min_width=40)
                    download = gr.DownloadButton("Download", size="sm", visible=False, elem_id=f"{sid}-download",
                                                 min_width=80)
                open_in = gr.Dropdown(list(OPEN_IN), value=None, label="Open in", visible=False, elem_id=f"{sid}-open",
                                      container=False)
                vid = gr.Number(None, visible=False)
            slots.append(Slot(video, caption, reuse, vid, open_in, fav, download))
    return Panel(tab, slots, prefix)


def caption(v: dict) -> str:
    """A result's caption: which video, and the seed that makes it again."""
    seed = f" · seed `{v['seed']}`" if v.get("seed") is not None else ""
    return f"**#{v['id']}** {label_of(v['kind'], v['label'], v.get('lineage'))[:60]}{seed}"


def panel_updates(videos: list[dict], n: int) -> list:
    """Updates for n slots showing `videos` (library rows), side by side; slots past them hidden (the first stays)."""
    out = []
    for k in range(n):
        if k < len(videos):
            v = videos[k]
            out += [gr.update(value=v["path"], visible=True), caption(v),
                    gr.update(value=f"Reuse seed {v['seed']}", visible=v.get("seed") is not None), v["id"],
                    gr.update(value=None, visible=True), fav_label(v["favourite"]), gr.update(value=v["path"], visible=True)]
        else:
            off = gr.update(visible=False)
            out += [gr.update(value=None, visible=k == 0), "", off, None, off, off, off]
    return out


def fav_label(on: bool) -> dict:
    return gr.update(value="★" if on else "☆", visible=True)


def unchanged(n: int) -> list:
    return [gr.update()] * (len(Slot.__dataclass_fields__) * n)


def seed_of(label: str) -> str:
    """The seed a "Reuse seed N" button carries, for the tab's seed field."""
    m = re.fullmatch(r"Reuse seed (\d+)", str(label or "").strip())
    if not m:
        raise InputError("seed: this result has no seed to reuse")
    return m.group(1)


def restored(studio, shown: dict | None, panels: list[Panel]) -> list:
    """After a reload: each tab's latest result again (`shown` = {tab: job id}, kept in the browser)."""
    out = []
    for p in panels:
        job = (shown or {}).get(p.tab)
        vids = studio.result(job)[0] if isinstance(job, int) else []
        out += panel_updates(vids, len(p.slots)) if vids else unchanged(len(p.slots))
    return out


def notify(notice: str | None) -> None:
    """A job's end as a toast. The poll that sees it runs outside the queue, where Gradio drops toasts, so it
    passes the notice ("<job>|ok|<panel prefix>|<text>", or "|bad|" when it made nothing) to this queued event."""
    if notice:
        _, kind, _, text = notice.split("|", 3)
        (gr.Info if kind == "ok" else gr.Warning)(text)


# What each kind of video is called in the page (the library's kinds are the operations' names).
KIND_WORDS = {name: op.word for name, op in OPS.items()}


def label_of(kind: str, label: str, lineage: dict | None = None) -> str:
    """A job's or video's label as a person reads it: its kind said once, then its prompt ("remix: a blue box"),
    or what it was made from when it has none ("blend of #3 and #5"). Job labels carry the kind already, some
    glued to the prompt ("extenda large…"), so that prefix is taken off first."""
    word, text = KIND_WORDS.get(kind, kind), str(label or "").strip()
    if word:
        for prefix in (f"{word}:", word):
            if text.lower().startswith(prefix):
                text = text[len(prefix):].strip()
                break
    if word and text:
        return f"{word}: {text}"
    if word:
        refs = [ref_name(r) for refs in (lineage or {}).values() for r in refs]
        return f"{word} of {' and '.join(refs)}" if refs else word
    return text if text and text != "untitled" else "untitled"


def ref_name(ref) -> str:
    """'lib:12' -> '#12' (the number the page gives videos); an upload by its file name."""
    ref = str(ref)
    if ref.startswith("lib:"):
        return f"#{ref[4:]}"
    return ref.split("_", 1)[-1] if ref.startswith("upload:") else ref


KIND_TAB = {name: op.tab for name, op in OPS.items()}   # the tab that makes each kind of video (kinds = operations)
